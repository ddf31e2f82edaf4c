"""Checkpoint save/load of the full bert-base training state (weights + Adam moments, ~1.3 GB) against
raw sequential write/read of the same bytes on the same disk, and against torch.save/torch.load.

    python bench/bench_runtime_checkpoint.py [--preset bert-base] [--dir DIR] [--repeat 2]

Every writer fsyncs its files (the baton's atomic writes do; the baselines are made to as well).
Reads come from the page cache for all three (the files were just written), on equal footing.
`sha256_only` times hashing the same bytes once: checkpoints are hashed on save and verified on load
(overlapped with the I/O), so on a CPU-starved machine that, not the disk, bounds the baton's speed.
Prints one JSON object; ratios > 1 mean faster than the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

import torch  # noqa: E402

from relaytrain_runtime.baton import Baton  # noqa: E402
from relaytrain_runtime.model import build_model, model_tensors  # noqa: E402
from relaytrain_runtime.presets import get_preset  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402


def full_state(preset: str) -> dict:
    model = build_model(get_preset(preset), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    for p in model.parameters():  # populate Adam's moments without a forward pass
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    weights = {k: v.detach() for k, v in model_tensors(model).items()}
    return {"weights": weights, "optimizer": opt.state_dict(),
            "meta": {"step": 1, "tokens": 0, "loss": 0.0, "done": False, "cost_usd": 0.0, "rng": {}, "metrics": {}}}


def state_bytes(state: dict) -> int:
    n = sum(t.numel() * t.element_size() for t in state["weights"].values())
    for slots in state["optimizer"]["state"].values():
        n += sum(t.numel() * t.element_size() for t in slots.values() if isinstance(t, torch.Tensor))
    return n


def fsync_path(path: str) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="bert-base")
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    root = Path(tempfile.mkdtemp(prefix="rt-bench-ckpt-", dir=args.dir))
    try:
        state = full_state(args.preset)
        nbytes = state_bytes(state)
        blob = os.urandom(1 << 20) * (nbytes >> 20)  # the same number of bytes, for the raw disk baseline
        res = {k: [] for k in ("raw_write", "raw_read", "torch_save", "torch_load", "baton_save", "baton_load",
                               "sha256_only")}
        for i in range(args.repeat):
            res["sha256_only"].append(timed(lambda: hashlib.sha256(blob).digest()))  # the verification's floor
            raw = root / f"raw-{i}.bin"

            def raw_write(raw=raw):
                with open(raw, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())

            res["raw_write"].append(timed(raw_write))
            res["raw_read"].append(timed(raw.read_bytes))
            raw.unlink()

            pt = root / f"state-{i}.pt"
            res["torch_save"].append(timed(lambda pt=pt: (torch.save(state, pt), fsync_path(pt))))
            res["torch_load"].append(timed(lambda pt=pt: torch.load(pt, weights_only=True)))
            pt.unlink()

            baton = Baton(open_store(str(root / f"run-{i}")))
            box = {}
            res["baton_save"].append(timed(lambda baton=baton, box=box: box.update(c=baton.commit(0, state))))
            res["baton_load"].append(timed(lambda baton=baton, box=box: baton.load(box["c"])))
            shutil.rmtree(root / f"run-{i}")
        best = {k: min(v) for k, v in res.items()}
        gbps = lambda s: round(nbytes / s / 1e9, 3)  # noqa: E731
        print(json.dumps({
            "preset": args.preset, "state_bytes": nbytes, "repeat": args.repeat,
            "seconds_best": {k: round(v, 3) for k, v in best.items()},
            "seconds_median": {k: round(statistics.median(v), 3) for k, v in res.items()},
            "GB_per_s": {k: gbps(v) for k, v in best.items()},
            "save_vs_raw_write": round(best["raw_write"] / best["baton_save"], 3),
            "load_vs_raw_read": round(best["raw_read"] / best["baton_load"], 3),
            "save_speedup_vs_torch_save": round(best["torch_save"] / best["baton_save"], 3),
            "load_speedup_vs_torch_load": round(best["torch_load"] / best["baton_load"], 3),
        }, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
