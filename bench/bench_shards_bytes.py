"""Bytes moved through the store per round and per optimizer step: sync gradients vs diloco (H = 8, 32).

    python bench/bench_shards_bytes.py [--shards 4] [--steps 32] [--dtype fp32]

Runs real rounds of the tiny GPT through the shard/reduce entry points on a file:// store whose
every read and write is counted, by key class:
  exchange   rounds/   shard objects and reduced pieces (what the shards send each other)
  baton      baton/ ckpt/   the checkpoint every shard loads and the commit writes
  inner      inner/    diloco: each shard's own AdamW moments, kept across rounds
  dataset    data/     token shards (a cache dir removes these in the cloud)
Then the same accounting, from the protocol's formulas checked against the measurement, for
gpt2-small. Prints JSON lines and a table; ratio = gradients bytes per step / diloco bytes per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

from relaytrain_runtime.data import build_stdlib_dataset  # noqa: E402
from relaytrain_runtime.presets import get_preset  # noqa: E402
from relaytrain_runtime.shards import rounds  # noqa: E402
from relaytrain_runtime.shards.entry import reduce_op, shard_op, status_op  # noqa: E402
from relaytrain_runtime.store import Store, open_store  # noqa: E402

CLASSES = {"rounds/": "exchange", "baton/": "baton", "ckpt/": "baton", "inner/": "inner", "data/": "dataset"}


class CountingStore(Store):
    """Delegates to a store, counting bytes read and written per key class."""

    def __init__(self, inner: Store, counts: Counter):
        self.inner, self.counts, self.url = inner, counts, inner.url

    def _cls(self, key: str) -> str:
        return next((c for p, c in CLASSES.items() if key.startswith(p)), "other")

    def read(self, key):
        data = self.inner.read(key)
        self.counts[self._cls(key), "read"] += len(data)
        return data

    def write(self, key, data):
        self.counts[self._cls(key), "written"] += len(data)
        self.inner.write(key, data)

    def create(self, key, data):
        ok = self.inner.create(key, data)
        if ok:
            self.counts[self._cls(key), "written"] += len(data)
        return ok

    def exists(self, key):
        return self.inner.exists(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def delete(self, key):
        self.inner.delete(key)

    def size(self, key):
        return self.inner.size(key)


def measure(root: Path, name: str, spec: dict, functions: dict, dataset: Path) -> dict:
    import shutil

    shutil.copytree(dataset / "data", root / name / "data")
    url = f"file://{root / name}"
    counts: Counter = Counter()
    real_open = rounds.open_store
    rounds.open_store = lambda u: CountingStore(real_open(u), counts)
    try:
        st = status_op({"op": "status", "store": url, "spec": spec, "functions": functions})
        counts.clear()
        K, n_rounds, rnd = functions["shards"], 0, st["current_round"]
        while not st["done"]:
            res = [shard_op({"op": "shard", "store": url, "round": rnd, "shard": k}) for k in range(K)]
            st = reduce_op({"op": "reduce", "store": url, "round": rnd, "baton": res[0]["baton"]})
            assert st["status"] == "committed", st
            n_rounds, rnd = n_rounds + 1, st["next_round"]
    finally:
        rounds.open_store = real_open
    steps = spec["steps"]
    per_round = {f"{c}_{d}": v / n_rounds for (c, d), v in counts.items()}
    return {"case": name, "rounds": n_rounds, "steps": steps, "per_round": per_round,
            "per_step": {k: v * n_rounds / steps for k, v in per_round.items()}}


def predicted(N: int, K: int, H: int, sync: str, dtype_bytes: int, inner_keep: bool) -> dict:
    """Bytes per round from the protocol (headers and JSON state ignored)."""
    ckpt = N * 4 * (3 if sync == "gradients" else 2)  # weights + AdamW m, v | weights + outer momentum
    out = {"exchange_written": K * N * dtype_bytes + N * 4, "exchange_read": K * N * dtype_bytes + N * 4,
           "baton_read": (K + 1) * ckpt, "baton_written": ckpt}
    if sync == "diloco" and inner_keep:
        out.update(inner_read=K * 2 * N * 4, inner_written=K * 2 * N * 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--steps", type=int, default=32, help="optimizer steps per case (a multiple of 32)")
    ap.add_argument("--dtype", default="fp32")
    args = ap.parse_args()
    K, dtype_bytes = args.shards, {"fp32": 4, "bf16": 2, "fp16": 2}[args.dtype]
    spec = {"preset": "tiny-gpt", "steps": args.steps, "batch_size": 8, "seq_len": 32, "eval_batches": 1,
            "keep_last": 2}
    cases = [("gradients", {"sync": "gradients"}, 1, True),
             ("diloco-H8", {"sync": "diloco", "local_steps": 8}, 8, True),
             ("diloco-H32", {"sync": "diloco", "local_steps": 32}, 32, True),
             ("diloco-H8-reset", {"sync": "diloco", "local_steps": 8, "inner_state": "reset"}, 8, False)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-shards-bytes-") as tmp:
        root = Path(tmp)
        build_stdlib_dataset(open_store(f"file://{root / 'ds'}"), 4096, cap_bytes=400_000)
        N_tiny = get_preset("tiny-gpt").param_count()
        for name, fn, H, keep in cases:
            m = measure(root, name, spec, {"shards": K, "exchange_dtype": args.dtype, **fn}, root / "ds")
            pred = predicted(N_tiny, K, H, fn["sync"], dtype_bytes, keep)
            m["predicted_per_round"] = pred
            m["exchange_measured_over_predicted"] = round(
                (m["per_round"].get("exchange_written", 0) + m["per_round"].get("exchange_read", 0))
                / (pred["exchange_written"] + pred["exchange_read"]), 4)
            big = predicted(get_preset("gpt2-small").param_count(), K, H, fn["sync"], dtype_bytes, keep)
            m["gpt2_small_per_step_predicted"] = {k: v / H for k, v in big.items()}
            m["H"] = H
            rows.append(m)
            print(json.dumps(m), flush=True)
    print()
    base = rows[0]

    def total(row, which, classes=("exchange",)):
        return sum(v for k, v in row[which].items() if k.rsplit("_", 1)[0] in classes)

    print(f"K={K}, exchange dtype {args.dtype}; MB per optimizer step (tiny-gpt measured | gpt2-small predicted)")
    print(f"{'case':16} {'exchange':>9} {'+inner':>9} {'+baton':>9} {'ratio xchg':>10} | {'gpt2 xchg':>10} "
          f"{'+inner':>9} {'+baton':>9} {'ratio all':>9}")
    for r in rows:
        ex = total(r, "per_step") / 1e6
        inner = total(r, "per_step", ("exchange", "inner")) / 1e6
        allb = total(r, "per_step", ("exchange", "inner", "baton")) / 1e6
        g = r["gpt2_small_per_step_predicted"]
        gex = sum(v for k, v in g.items() if k.startswith("exchange")) / 1e6
        gin = gex + sum(v for k, v in g.items() if k.startswith("inner")) / 1e6
        gall = sum(g.values()) / 1e6
        gb = base["gpt2_small_per_step_predicted"]
        print(f"{r['case']:16} {ex:>9.2f} {inner:>9.2f} {allb:>9.2f} {total(base, 'per_step') / 1e6 / ex:>10.2f} | "
              f"{gex:>10.1f} {gin:>9.1f} {gall:>9.1f} {sum(gb.values()) / 1e6 / gall:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
