"""A run as its store holds it, read once as JSON: spec, retained commits, lineage, stream, legs, evals.

The metrics stream is filtered to the run's lineage: an object `metrics/<gen>-<leg>` counts when
its commit is an ancestor of the newest commit (same gen and leg id), or when its gen is older
than the oldest retained commit (pruned history: the manifest is gone, the stream stays). Objects
of a lost race, of an abandoned branch or of a leg still in flight (no manifest yet) are ignored.
Per (kind, step) the record of the newest such commit wins, so a step trained twice counts once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import (
    COMMIT_PREFIX,
    EVAL_PREFIX,
    LEGS_PREFIX,
    MANIFEST_KEY,
    SPEC_KEY,
    commit_key,
    gen_of_commit_key,
)
from relaytrain_runtime.contract.metrics import read_records
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import NotFound, Store, open_store


@dataclass
class RunView:
    store_url: str
    spec: RunSpec
    commits: dict[int, dict]  # retained manifests by gen
    lineage: dict[int, str | None]  # gen -> leg id of the commits on the newest commit's parent chain
    train: list[dict] = field(default_factory=list)  # stream records of the lineage, by step
    evals: list[dict] = field(default_factory=list)  # {"step", "val_loss", "perplexity", "gen"} by step
    legs: list[dict] = field(default_factory=list)  # leg (or node) statuses, by gen
    dataset_tokens: int | None = None  # tokens of the train split, when the run's dataset manifest is readable

    @property
    def newest(self) -> dict:
        return self.commits[max(self.lineage)] if self.lineage else {}


def _json(store: Store, key: str):
    try:
        return json.loads(store.read(key))
    except NotFound:
        return None
    except ValueError:
        return None  # a torn or foreign object: telemetry never stops the reader


def _commits(store: Store) -> dict[int, dict]:
    out = {}
    for gen in sorted(g for g in map(gen_of_commit_key, store.list(COMMIT_PREFIX)) if g is not None):
        commit = _json(store, commit_key(gen))
        if isinstance(commit, dict) and "step" in commit:
            out[gen] = commit
    return out


def lineage_of(commits: dict[int, dict]) -> dict[int, str | None]:
    """gen -> leg id along the newest commit's parent chain (as far as manifests are retained)."""
    chain: dict[int, str | None] = {}
    gen = max(commits) if commits else None
    while gen in commits and gen not in chain:
        chain[gen] = commits[gen].get("leg_id")
        gen = commits[gen].get("parent")
    return chain


def in_lineage(gen: int, leg: str | None, chain: dict[int, str | None]) -> bool:
    if gen in chain:
        return chain[gen] is None or leg is None or chain[gen] == leg
    return bool(chain) and gen < min(chain)


def _by_step(records: list[dict]) -> list[dict]:
    latest: dict[int, dict] = {}
    for rec in sorted(records, key=lambda r: r["gen"]):  # stable: key order within a gen
        step = rec.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            latest[step] = rec
    return [latest[s] for s in sorted(latest)]


def _evals(store: Store, stream: list[dict], chain: dict[int, str | None]) -> list[dict]:
    """Evaluations from the stream, completed by the `eval/<gen>.json` objects (a finishing leg's or
    `relaytrain-runtime evaluate`'s) for steps the stream does not have."""
    evals = [{"step": r["step"], "val_loss": r.get("val_loss"), "perplexity": r.get("perplexity"), "gen": r["gen"]}
             for r in stream if r.get("kind") == "eval"]
    have = {e["step"] for e in evals}
    for key in store.list(EVAL_PREFIX):
        rec = _json(store, key)
        if not isinstance(rec, dict) or rec.get("split", "val") != "val" or rec.get("step") in have:
            continue
        if isinstance(rec.get("gen"), int) and not in_lineage(rec["gen"], None, chain):
            continue
        if isinstance(rec.get("step"), int) and isinstance(rec.get("loss"), (int, float)):
            evals.append({"step": rec["step"], "val_loss": rec["loss"], "perplexity": rec.get("perplexity"),
                          "gen": rec.get("gen")})
    return sorted(evals, key=lambda e: e["step"])


def _dataset_tokens(store: Store, spec: RunSpec) -> int | None:
    manifest = _json(store, MANIFEST_KEY)
    if manifest is None and "://" in spec.dataset:
        try:
            manifest = _json(open_store(spec.dataset), MANIFEST_KEY)
        except RelayError:
            manifest = None
    try:
        return sum(int(s["tokens"]) for s in manifest["splits"]["train"]) or None
    except (TypeError, KeyError, ValueError):
        return None


def load_run(store: Store | str) -> RunView:
    """Everything `status` and `report` show, read once. Raises RelayError when the store has no run."""
    store = open_store(store) if isinstance(store, str) else store
    try:
        spec = RunSpec.from_json(store.read(SPEC_KEY))
    except NotFound:
        raise RelayError(f"no run at {store.url} (no {SPEC_KEY}): start one with `relaytrain launch`, "
                         "`relaytrain run --local` or `relaytrain-runtime init`") from None
    commits = _commits(store)
    chain = lineage_of(commits)
    stream = [r for r in read_records(store) if in_lineage(r["gen"], r.get("leg"), chain)]
    train = _by_step([r for r in stream if r.get("kind") == "train"])
    evals = _by_step([r for r in stream if r.get("kind") == "eval"])
    legs = [s for s in (_json(store, k) for k in store.list(LEGS_PREFIX)) if isinstance(s, dict)]
    legs.sort(key=lambda s: (s.get("gen") or 0, s.get("step") or 0))
    return RunView(store_url=store.url, spec=spec, commits=commits, lineage=chain, train=train,
                   evals=_evals(store, evals, chain), legs=legs, dataset_tokens=_dataset_tokens(store, spec))
