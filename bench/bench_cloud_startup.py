"""Leg start-up on a cold process, broken down: interpreter, imports, baton fetch, first step. S3 (moto).

    python bench/bench_cloud_startup.py [--preset tiny-gpt] [--batch-size 8] [--seq-len 128] [--repeat 3]

Sets up a run in an S3 bucket (moto, own process, 127.0.0.1) with one checkpoint, then starts fresh
Python processes that do what a cold Lambda leg does, timing each phase: interpreter start, import of
the handler (torch-free), import of the trainer (torch), spec + dataset fetch, model build, baton fetch
(download + sha256 verify), restore, first step, and a second step as the steady-state baseline.
Prints one JSON object: medians in seconds, `startup_in_steps` = start-up / steady step, and
`share_of_900s_leg` = start-up / 900 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "runtime"), str(ROOT), str(ROOT / "bench")]

from bench_cloud_store import make_bucket, start_moto  # noqa: E402

from relaytrain_runtime.store import open_store  # noqa: E402

CHILD = r"""
import json, os, time
t0 = time.perf_counter()
with open("/proc/self/stat") as fh:  # process age, as relaytrain_runtime.leg.process_age (which imports torch)
    ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
with open("/proc/uptime") as fh:
    started = float(fh.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
t = {}
def lap(name):
    global t0
    now = time.perf_counter(); t[name] = now - t0; t0 = now
import relaytrain_runtime.handlers.aws_lambda; lap("import_handler")
import relaytrain_runtime.leg, relaytrain_runtime.train; lap("import_trainer")
from relaytrain_runtime import determinism
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import ensure_dataset, open_dataset
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, restore, train_step
store = open_store(URL); baton = Baton(store); spec = baton.spec(); determinism.configure(); lap("spec")
ensure_dataset(store, spec); ds = open_dataset(store, spec); lap("dataset_fetch")
model, opt = build(spec); lap("model_build")
commit, state = baton.resume(); lap("baton_fetch")
restore(model, opt, state); determinism.restore_rng(state["meta"]["rng"]); lap("restore")
train_step(model, opt, spec, ds, commit["step"]); lap("first_step")
train_step(model, opt, spec, ds, commit["step"] + 1); lap("steady_step")
t["interpreter"] = started
print(json.dumps(t))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny-gpt")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    moto, _ = start_moto()
    try:
        bucket = f"bench-startup-{os.getpid()}"
        make_bucket("s3", bucket)
        url = f"s3://{bucket}/run"
        from relaytrain_runtime.leg import run_leg

        spec = {"preset": args.preset, "steps": 1000, "batch_size": args.batch_size, "seq_len": args.seq_len}
        first = run_leg(url, spec=spec, max_steps=1)  # builds the stdlib dataset into the bucket and commits gen 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "runtime"), str(ROOT)]),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", f"URL = {url!r}\n" + CHILD], env=env, capture_output=True,
                                 text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
        startup = sum(v for k, v in med.items() if k not in ("steady_step",))
        print(json.dumps({"preset": args.preset, "batch_size": args.batch_size, "seq_len": args.seq_len,
                          "checkpoint_bytes": sum(o["size"] for o in
                                                  json.loads(open_store(url).read("baton/00000001.json"))["objects"].values()),
                          "repeat": args.repeat, "seconds": med, "startup_s": round(startup, 3),
                          "startup_in_steps": round(startup / med["steady_step"], 1),
                          "share_of_900s_leg": round(startup / 900, 4), "first_leg_status_seconds": first["seconds"]},
                         indent=1))
    finally:
        moto.terminate()


if __name__ == "__main__":
    main()
