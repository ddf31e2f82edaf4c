"""Relay overhead of a 900 s leg at bert-base, projected from measured start-up, load and save times.

    python bench/bench_runtime_relay.py [--preset bert-base] [--leg-seconds 900] [--store DIR]

Builds a bert-base run (stdlib dataset, vocab 30522), runs one leg of one step to write a full checkpoint
(weights + Adam), then a second leg in a fresh process, exactly as a Lambda would: its status reports the
seconds spent starting (interpreter + imports), loading (spec, dataset, checkpoint verify + restore) and
saving (checkpoint write + commit). Overhead = start + load + save, as a fraction of the leg.
Prints one JSON object; target <= 2 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def leg(url: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "leg", "--store", url, "--max-steps", "1"],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="bert-base")
    ap.add_argument("--leg-seconds", type=float, default=900.0)
    ap.add_argument("--store", default=None, help="directory for the run (default: a temp dir, removed)")
    ap.add_argument("--legs", type=int, default=2, help="measured legs after the first (median reported)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    root = Path(args.store or tempfile.mkdtemp(prefix="rt-bench-relay-"))
    url = f"file://{root.absolute()}"
    try:
        subprocess.run([sys.executable, "-m", "relaytrain_runtime", "init", "--store", url, "--preset", args.preset,
                        "--steps", "100000", "--batch-size", "1", "--seq-len", "128"],
                       check=True, capture_output=True, env=env)
        leg(url, env)  # writes the first full checkpoint
        legs = [leg(url, env) for _ in range(args.legs)]
        legs.sort(key=lambda s: s["seconds"]["start"] + s["seconds"]["load"] + s["seconds"]["save"])
        s = legs[len(legs) // 2]["seconds"]
        overhead = s["start"] + s["load"] + s["save"]
        ckpt = sum(p.stat().st_size for p in (root / "ckpt").rglob("*") if p.is_file()) / max(
            len(list((root / "baton").iterdir())), 1
        )
        print(
            json.dumps(
                {
                    "preset": args.preset,
                    "leg_seconds": args.leg_seconds,
                    "checkpoint_bytes": int(ckpt),
                    "measured_seconds": s,
                    "overhead_seconds": round(overhead, 3),
                    "overhead_fraction": round(overhead / args.leg_seconds, 5),
                    "note": "plus the end-of-leg margin (1 s + up to one step) left unused by the deadline trigger",
                },
                indent=1,
            )
        )
    finally:
        if args.store is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
