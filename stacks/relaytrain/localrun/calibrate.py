"""`relaytrain plan FILE --calibrate`: measure real training steps here, save FLOP/s per vCPU.

It lives with the local runners (it runs the runtime in child processes, as they do); the planner
only reads the saved figure (relaytrain.plan.devices), so plan never imports localrun.

Runs the blueprint's model through the runtime (`init`, then two `leg --max-steps` processes: the
first warms up, the second is timed) in a temporary store, with every local core. The measured
rate replaces the assumed per-vCPU throughput for Lambda and Cloud Functions plans.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import sys
import tempfile

from relaytrain.blueprint.schema import Blueprint
from relaytrain.localrun.process import runtime
from relaytrain.plan import flops_per_token
from relaytrain.worker import run_spec, spec_flags

WARM_STEPS = 2
MEASURE_STEPS = 5
MAX_STEP_FLOPS = 2e11  # big presets measure fewer sequences per step, so calibration stays quick on a CPU


def calibrate(bp: Blueprint, path: pathlib.Path) -> dict:
    spec = run_spec(bp)
    per_sequence = flops_per_token(spec.model, spec.sequence_length) * spec.sequence_length
    batch = max(1, min(spec.batch_size, int(MAX_STEP_FLOPS // per_sequence)))
    probe = bp.training.model_copy(update={"steps": WARM_STEPS + MEASURE_STEPS + 1, "batch_size": batch,
                                           "micro_batch_size": 0, "dataset": "stdlib", "eval_batches": 1})
    threads = os.cpu_count() or 1
    print(f"calibrating: {spec.preset}, {batch} x {spec.sequence_length} tokens per step, {threads} thread(s)",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="relaytrain-calibrate-") as tmp:
        store = pathlib.Path(tmp).as_uri()
        runtime("init", ["--store", store, *spec_flags(probe.run_spec())], threads=threads, capture=True)
        runtime("leg", ["--store", store, "--max-steps", str(WARM_STEPS)], threads=threads, capture=True)
        out = runtime("leg", ["--store", store, "--max-steps", str(MEASURE_STEPS)], threads=threads, capture=True)
    status = json.loads(out.strip().splitlines()[-1])
    step_s = status["seconds"]["train"] / status["leg_steps"]
    flops = flops_per_token(spec.model, spec.sequence_length) * batch * spec.sequence_length
    result = {"cpu_flops_per_vcpu": flops / step_s / threads, "step_seconds": step_s, "threads": threads,
              "preset": spec.preset, "tokens_per_step": batch * spec.sequence_length,
              "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MZ")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"calibrated: {step_s:.3f} s per step = {result['cpu_flops_per_vcpu'] / 1e9:.1f} GFLOP/s per vCPU "
          f"(saved to {path})", file=sys.stderr)
    return result
