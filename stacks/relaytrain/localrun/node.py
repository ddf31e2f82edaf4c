"""gpu-node on this machine: one continuous node process with periodic checkpoints.

The node entry point is the one a VM runs (`relaytrain-runtime node`); here it trains on the CPU,
so the end report prices the measured seconds at the instance's rate and, next to it, the
planner's estimate of the same job on the instance's GPU.
"""

from __future__ import annotations

import json
import sys
import time

from relaytrain.blueprint.schema import Blueprint
from relaytrain.localrun.process import runtime, threads_for
from relaytrain.plan import plan
from relaytrain.plan.report import duration, usd
from relaytrain.worker import cost_per_second, run_spec, spec_flags
from relaytrain_runtime.spec import RunSpec


def train_node(bp: Blueprint, store_url: str, spec: RunSpec) -> tuple[dict, float]:
    """Init the run with `spec` and train it in one node process; returns (node status, wall seconds)."""
    threads = threads_for(8)  # a VM: every local core
    per_s = cost_per_second(bp)
    runtime("init", ["--store", store_url, *spec_flags(spec)], threads=threads, capture=True)
    print(f"{bp.name}: node process, checkpoint every {bp.gpu.checkpoint_every_s} s, {threads} local thread(s) "
          f"standing in for {bp.gpu.instance_type}; store {store_url}", file=sys.stderr, flush=True)
    t0 = time.time()
    out = runtime("node", ["--store", store_url, "--checkpoint-every", str(bp.gpu.checkpoint_every_s),
                           "--cost-per-second", repr(per_s)], threads=threads, capture=True)
    wall = time.time() - t0
    return json.loads(out.strip().splitlines()[-1]), wall


def cost_report(bp: Blueprint, seconds: float) -> tuple[str, float]:
    rate = cost_per_second(bp) * 3600  # every node of the blueprint
    kind = "spot" if bp.gpu.spot else "on-demand"
    estimate = plan(bp)
    cost = rate * seconds / 3600
    return (f"the same {duration(seconds)} on {bp.gpu.nodes} x {bp.gpu.instance_type} {kind} "
            f"(${rate:.3f}/h): {usd(cost)}; on the instance's GPU the planner expects {duration(estimate.wall_s)} "
            f"({usd(estimate.total_usd)})", cost)


def run_local(bp: Blueprint, store_url: str) -> dict:
    status, wall = train_node(bp, store_url, run_spec(bp))
    text, cost = cost_report(bp, wall)
    print(f"done: step {status.get('step')} loss {status.get('loss')} in {wall:.1f} s, "
          f"{status.get('commits', '?')} checkpoint(s)\n{text}", file=sys.stderr)
    return {**status, "wall_s": wall, "cloud_cost_usd": cost}
