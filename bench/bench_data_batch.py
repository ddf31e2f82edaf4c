"""Batch assembly time per step against the step time, gpt2-small at batch 8 x 1024 on CPU (target < 2 %).

    python bench/bench_data_batch.py [--tokens 33554432] [--batches 200] [--steps 2]

Dataset: `--tokens` random token ids (vocab 50257, uint32) in 2^20-token shards, written to a file store;
batches read them through the shard cache (an empty cache directory: the first batches pay the fetches).
"batch": mean seconds of `data.batch(spec, step, 0, 1, ds)` over `--batches` consecutive steps (epoch order),
first with an empty cache ("batch_s": fetches included), then again ("warm_batch_s"). `--steps 0`: batches only.
"step": mean seconds of `train.train_step` (gradient accumulation over micro batches of 2, the same global
batch) over `--steps` steps after `--warmup` untimed ones. Prints one JSON object with the ratio batch/step.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

import numpy as np  # noqa: E402

from relaytrain_runtime.data import batch, open_dataset, write_token_dataset  # noqa: E402
from relaytrain_runtime.spec import RunSpec  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1 << 25)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"{tmp}/ds")
        ids = np.random.default_rng(0).integers(3, 50257, size=args.tokens)
        write_token_dataset(store, {"train": [ids], "val": [ids[:1 << 16]]}, 50257,
                            {"<|endoftext|>": 0, "<pad>": 1, "<mask>": 2}, corpus={"name": "random"})
        spec = RunSpec(preset="gpt2-small", steps=1000, batch_size=8, seq_len=1024, micro_batch_size=2,
                       dataset=store.url)
        ds = open_dataset(store, spec, f"{tmp}/cache")
        t0 = time.perf_counter()
        for step in range(args.batches):
            batch(spec, step, 0, 1, ds)
        per_batch = (time.perf_counter() - t0) / args.batches
        fetched = ds.splits["train"].fetched
        t0 = time.perf_counter()
        for step in range(args.batches):  # the same steps again: shards cached and mapped
            batch(spec, step, 0, 1, ds)
        warm = (time.perf_counter() - t0) / args.batches
        print(json.dumps({"batch_s": round(per_batch, 5), "warm_batch_s": round(warm, 5),
                          "shards_fetched": fetched}), flush=True)
        if not args.steps:
            return

        from relaytrain_runtime.train import build, train_step

        model, optimizer = build(spec)
        for step in range(args.warmup):
            train_step(model, optimizer, spec, ds, step)
        t0 = time.perf_counter()
        for step in range(args.warmup, args.warmup + args.steps):
            train_step(model, optimizer, spec, ds, step)
        per_step = (time.perf_counter() - t0) / args.steps
    print(json.dumps({"batch_s": round(per_batch, 5), "step_s": round(per_step, 3),
                      "batch_share_of_step": round(per_batch / per_step, 5), "shards_fetched": fetched,
                      "shards": -(-args.tokens // (1 << 20))}))


if __name__ == "__main__":
    main()
