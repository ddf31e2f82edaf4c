"""The metrics stream: per-step and evaluation records, one JSON-lines object per commit.

A record is a flat JSON object with a `kind`:
    {"kind": "train", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_s",
     "data_s", "compute_s", "comm_s", "mfu"}            (fields a worker cannot measure are omitted)
    {"kind": "eval", "step", "val_loss", "perplexity", "gen"}

Writers append one object per commit (`metrics_key(gen, leg)`), written before the commit's
manifest; a committer that loses the race deletes its object. `read_records` gives every record;
`read_stream` the run's history (one record per kind and step, see there). Pure Python.
"""

from __future__ import annotations

import json

from relaytrain_runtime.contract.keys import (
    COMMIT_PREFIX,
    METRICS_PREFIX,
    gen_of_commit_key,
    gen_of_metrics_key,
    leg_of_metrics_key,
    metrics_key,
)


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


def _committers(store) -> dict[int, str]:
    """gen -> the leg id of its manifest, for every manifest still in the store."""
    out = {}
    for key in store.list(COMMIT_PREFIX):
        gen = gen_of_commit_key(key)
        try:
            leg = json.loads(store.read(key)).get("leg_id")
        except (ValueError, AttributeError, OSError):
            continue
        if gen is not None and isinstance(leg, str):
            out[gen] = leg
    return out


def read_stream(store, kind: str | None = None) -> list[dict]:
    """The run's history: one record per (kind, step), in step order. Of the objects of one gen, only
    its manifest's committer's counts while the manifest exists (a worker killed between its metrics
    object and its manifest leaves an object another committer's replaces); where several remain
    for a step, the one later in key order wins."""
    committers = _committers(store)
    by_step: dict[tuple[str, int], dict] = {}
    for key in sorted(store.list(METRICS_PREFIX)):
        gen = gen_of_metrics_key(key)
        if gen is None or (gen in committers and committers[gen] != leg_of_metrics_key(key)):
            continue
        for rec in _object_records(store, key, gen):
            if isinstance(rec.get("step"), int) and (kind is None or rec.get("kind") == kind):
                by_step[(rec.get("kind"), rec["step"])] = rec
    return sorted(by_step.values(), key=lambda r: (r["step"], r.get("kind") != "train"))
