"""The metrics stream: per-step and evaluation records, one JSON-lines object per commit.

A record is a flat JSON object with a `kind`:
    {"kind": "train", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_s",
     "data_s", "compute_s", "comm_s", "mfu"}            (fields a worker cannot measure are omitted)
    {"kind": "eval", "step", "val_loss", "perplexity", "gen"}

Writers append one object per commit (`metrics_key(gen, leg)`), written before the commit's
manifest; a committer that loses the race deletes its object. `read_records` gives every record;
`read_stream` the run's history, by the one lineage rule every reader uses (status, report, plots, nodes):

An object `metrics/<gen>-<leg>` counts when its commit is on the newest commit's parent chain (same
gen and leg id), or when its gen is older than the oldest retained commit of that chain (pruned
history: the manifest is a tombstone, the stream stays). Objects of a lost race, of a worker killed
before its manifest, of an abandoned branch or of a leg still in flight (no manifest yet) are ignored.
Per (kind, step) the record of the newest such commit wins, so a step trained twice counts once.
Pure Python.
"""

from __future__ import annotations

import json

from relaytrain_runtime.contract.keys import (
    COMMIT_PREFIX,
    METRICS_PREFIX,
    commit_key,
    gen_of_commit_key,
    gen_of_metrics_key,
    leg_of_metrics_key,
    metrics_key,
)
from relaytrain_runtime.store.base import NotFound


def encode_records(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()


def write_records(store, gen: int, leg_id: str, records: list[dict]) -> str:
    """Write the records of one commit (gen by leg) as one new object; returns its key."""
    key = metrics_key(gen, leg_id)
    store.write(key, encode_records(records))
    return key


def read_records(store, gens: set[int] | None = None) -> list[dict]:
    """Every record in the store, in key order (optionally only of the commits `gens`), each with
    `gen` and `leg` (the writer's leg id, from the key) set. Unreadable lines are skipped: the stream is
    telemetry, never the run's state."""
    out = []
    for key in sorted(store.list(METRICS_PREFIX)):
        gen = gen_of_metrics_key(key)
        if gen is not None and (gens is None or gen in gens):
            out.extend(_object_records(store, key, gen))
    return out


def _object_records(store, key: str, gen: int) -> list[dict]:
    out = []
    for line in store.read(key).decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append({**rec, "gen": rec.get("gen", gen), "leg": rec.get("leg", leg_of_metrics_key(key))})
    return out


def read_commits(store) -> dict[int, dict]:
    """gen -> manifest of every retained commit (a manifest with a `step`; tombstones and torn objects skipped)."""
    out = {}
    for gen in sorted(g for g in map(gen_of_commit_key, store.list(COMMIT_PREFIX)) if g is not None):
        try:
            commit = json.loads(store.read(commit_key(gen)))
        except (NotFound, ValueError):
            continue  # a torn or foreign object: telemetry never stops the reader
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
    """Whether the object of (gen, leg) belongs to the committed lineage `chain` (see the module docstring)."""
    if gen in chain:
        return chain[gen] is None or leg is None or chain[gen] == leg
    return bool(chain) and gen < min(chain)


def read_stream(store, kind: str | None = None, commits: dict[int, dict] | None = None) -> list[dict]:
    """The run's history: the records of the committed lineage, one per (kind, step), in step order
    (train before eval at a step). `commits` (from `read_commits`) saves reading the manifests again."""
    chain = lineage_of(read_commits(store) if commits is None else commits)
    latest: dict[tuple[str, int], dict] = {}
    records = [r for r in read_records(store) if in_lineage(r["gen"], r.get("leg"), chain)]
    for rec in sorted(records, key=lambda r: r["gen"]):  # stable: key order within a gen
        step = rec.get("step")
        if isinstance(step, int) and not isinstance(step, bool) and (kind is None or rec.get("kind") == kind):
            latest[(rec.get("kind"), step)] = rec
    return sorted(latest.values(), key=lambda r: (r["step"], r.get("kind") != "train"))
