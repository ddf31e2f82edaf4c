"""How well does the planner predict a real run? Plan, then run, the same blueprint here.

1. plan the blueprint with the default device table (the baseline: assumed 30 GFLOP/s per vCPU);
2. calibrate on this machine (`plan --calibrate`: real steps through the runtime) and plan again;
3. run it (`run --local`) and compare: measured / predicted for training seconds, legs and cost.

    python bench/bench_blueprints_plan_accuracy.py [BLUEPRINT]   (default: the README demo blueprint)

A ratio of 1.00 is a perfect prediction. Run on an idle machine for stable numbers.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def relaytrain(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "relaytrain", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"relaytrain {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def main() -> None:
    blueprint = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "blueprints" / "tiny-gpt-lambda-steps.yaml")
    with tempfile.TemporaryDirectory(prefix="relaytrain-bench-") as tmp:
        cal = pathlib.Path(tmp) / "calibration.json"
        assumed = relaytrain("plan", blueprint, "--json", "--calibration", str(cal))  # no file yet: defaults
        calibrated = relaytrain("plan", blueprint, "--json", "--calibrate", "--calibration", str(cal))
        rate = json.loads(cal.read_text())
        run = relaytrain("run", blueprint, "--local", "--store", pathlib.Path(tmp, "store").as_uri(), "--json")
    store_train = run["seconds"]["train"]
    print(f"blueprint: {blueprint}")
    print(f"calibration: {rate['step_seconds']:.3f} s/step, {rate['cpu_flops_per_vcpu'] / 1e9:.2f} GFLOP/s per vCPU "
          f"({rate['threads']} threads)")
    print(f"measured run: {run['legs']} legs, {store_train:.1f} s training, {sum(run['billed_seconds']):.1f} s billed, "
          f"cloud cost ${run['cloud_cost_usd']:.5f}")
    print(f"{'prediction':<28} {'train s':>9} {'legs':>6} {'cost $':>10}   measured/predicted: train  legs  cost")
    lambda_items = ("Lambda compute", "Lambda requests", "Step Functions transitions")
    for label, p in (("assumed 30 GFLOP/s/vCPU", assumed), ("calibrated", calibrated)):
        cost = sum(line["usd"] for line in p["lines"] if line["item"].startswith(lambda_items))
        print(f"{label:<28} {p['train_s']:>9.1f} {p['legs']:>6} {cost:>10.5f}   "
              f"{' ' * 18}{store_train / p['train_s']:>5.2f} {run['legs'] / p['legs']:>5.2f} "
              f"{run['cloud_cost_usd'] / cost:>5.2f}")


if __name__ == "__main__":
    main()
