"""Versions of a run's spec: an existing run accepts a spec that only raises `steps` (train further) as a
recorded new version; the schedule continues from the committed step. Any other change is refused.

    spec.json              version 1, created once
    spec/<version>.json    version 2, 3, ...: each created once; the highest is the run's spec

Pure Python (no torch).
"""

from __future__ import annotations

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import SPEC_VERSIONS_PREFIX, spec_version_key, version_of_spec_key


def is_new_version(stored, asked) -> bool:
    """False if `asked` is the stored spec, True if it only raises steps (a new version); otherwise a
    RelayError naming every differing field."""
    if stored.digest() == asked.digest():
        return False
    ours, theirs = asked.to_dict(), stored.to_dict()
    changed = sorted(k for k in ours if ours.get(k) != theirs.get(k))
    if changed == ["steps"] and asked.steps > stored.steps:
        return True
    diff = ", ".join(f"{k}={theirs.get(k)!r} (asked {ours.get(k)!r})" for k in changed)
    raise RelayError(f"already holds a different run ({diff}); only raising steps is accepted on an existing run; "
                     "use a new store URL, or the options of the existing run")


def current_version(keys: list[str]) -> int:
    """The run's spec version given the keys under SPEC_VERSIONS_PREFIX (1 when there are none)."""
    return max((v for v in map(version_of_spec_key, keys) if v is not None), default=1)


def current_key(store) -> str:
    return spec_version_key(current_version(store.list(SPEC_VERSIONS_PREFIX)))


def record_version(store, spec) -> int:
    """Create the next spec version; returns its number (a concurrent writer of the same version wins once)."""
    version = current_version(store.list(SPEC_VERSIONS_PREFIX)) + 1
    if not store.create(spec_version_key(version), spec.to_json().encode()):
        raise RelayError(f"{store.url}: spec version {version} was written concurrently; run init again")
    return version


def version_digests(store) -> set[str]:
    """The digests of every recorded version of the run's spec (spec.json and spec/<version>.json)."""
    from relaytrain_runtime.contract.keys import SPEC_KEY
    from relaytrain_runtime.spec import RunSpec

    keys = [SPEC_KEY] + [k for k in store.list(SPEC_VERSIONS_PREFIX) if version_of_spec_key(k) is not None]
    return {RunSpec.from_json(store.read(k)).digest() for k in keys if store.exists(k)}
