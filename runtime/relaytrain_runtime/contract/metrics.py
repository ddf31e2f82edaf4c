"""The metrics stream: per-step and evaluation records, one JSON-lines object per commit.

A record is a flat JSON object with a `kind`:
    {"kind": "train", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_s",
     "data_s", "compute_s", "comm_s", "mfu"}            (fields a worker cannot measure are omitted)
    {"kind": "eval", "step", "val_loss", "perplexity", "gen"}

Writers append one object per commit (`metrics_key(gen, leg)`), written before the commit's
manifest; readers take every object in key order and keep, per step, the record of the commit
that is an ancestor of the run's newest one (a lost race's object is ignored). Pure Python.
"""

from __future__ import annotations

import json

from relaytrain_runtime.contract.keys import METRICS_PREFIX, gen_of_metrics_key, leg_of_metrics_key, metrics_key


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
        gen, leg = gen_of_metrics_key(key), leg_of_metrics_key(key)
        if gen is None or (gens is not None and gen not in gens):
            continue
        for line in store.read(key).decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append({**rec, "gen": rec.get("gen", gen), "leg": rec.get("leg", leg)})
    return out
