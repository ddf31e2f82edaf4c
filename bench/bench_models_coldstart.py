"""Leg cold start with transformers models vs today's runtime: process start to the end of the first step.

    python bench/bench_models_coldstart.py --baseline /work/main/runtime [--presets tiny-gpt,gpt2-small,smollm-135m]
        [--repeat 3]

Each sample is a fresh interpreter that imports the runtime from the given directory, opens a stdlib
dataset (vocab 4096, built once), builds the model from the seed and runs one optimizer step at batch
1 x 128; it prints the process's age (`leg.process_age()`, counted from the interpreter's start) at
the end of that step. "baseline" imports the runtime at --baseline (today's hand-written models);
"candidate" the runtime of this checkout (transformers classes). Presets missing from the baseline are
measured on the candidate only. Samples alternate baseline/candidate; prints one JSON object (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "runtime"
PROBE = """
import json, sys
from relaytrain_runtime import determinism
from relaytrain_runtime.leg import process_age
from relaytrain_runtime.presets import PRESETS
if sys.argv[2] not in PRESETS:
    print(json.dumps(None)); raise SystemExit
from relaytrain_runtime.data import open_dataset
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, train_step
determinism.configure()
spec = RunSpec(preset=sys.argv[2], steps=1000, batch_size=1, seq_len=128)
dataset = open_dataset(open_store(sys.argv[1]), spec)
model, optimizer = build(spec)
train_step(model, optimizer, spec, dataset, 0)
print(json.dumps(process_age()))
"""


def sample(runtime: Path, store: str, preset: str) -> float | None:
    env = {**os.environ, "PYTHONPATH": str(runtime)}
    out = subprocess.run([sys.executable, "-c", PROBE, store, preset], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{runtime} {preset}: the probe failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="runtime/ directory of today's runtime (e.g. from main)")
    ap.add_argument("--presets", default="tiny-gpt,gpt2-small,smollm-135m")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    store = tempfile.mkdtemp(prefix="rt-bench-cold-")
    build = ("from relaytrain_runtime.data import ensure_dataset; from relaytrain_runtime.spec import RunSpec; "
             "from relaytrain_runtime.store import open_store; import sys; "
             "ensure_dataset(open_store(sys.argv[1]), RunSpec(preset='tiny-gpt'))")
    subprocess.run([sys.executable, "-c", build, store], env={**os.environ, "PYTHONPATH": str(HERE)}, check=True)
    result = {"load": os.getloadavg()[0], "batch": "1 x 128", "presets": {}}
    for preset in args.presets.split(","):
        base, cand = [], []
        for _ in range(args.repeat):
            base.append(sample(Path(args.baseline), store, preset))
            cand.append(sample(HERE, store, preset))
        row = {"candidate_s": round(statistics.median(cand), 3)}
        if None not in base:
            row.update(baseline_s=round(statistics.median(base), 3),
                       ratio=round(statistics.median(cand) / statistics.median(base), 3))
        result["presets"][preset] = row
        print(json.dumps({preset: row, "samples": {"baseline": base, "candidate": cand}}), file=sys.stderr, flush=True)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
