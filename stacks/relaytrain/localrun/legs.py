"""lambda-steps on this machine: time-boxed legs in fresh processes, then the bill they would run up.

A leg gets the Lambda's timeout minus the blueprint's margin, the CPU share its memory setting buys
(1,769 MB per vCPU) as local threads, and accrues the Lambda's price per second in the baton.
"""

from __future__ import annotations

import sys

from relaytrain.blueprint.schema import Blueprint
from relaytrain.localrun.process import leg_statuses, read_json, runtime, threads_for
from relaytrain.plan import lambda_legs_cost
from relaytrain.plan.report import format_lines
from relaytrain.worker import cost_per_second, lambda_vcpu, run_spec, spec_flags
from relaytrain_runtime.contract.keys import SUMMARY_KEY


def run_local(bp: Blueprint, store_url: str) -> dict:
    lam = bp.lambda_
    leg_s = lam.timeout_s - lam.leg_margin_s
    vcpu = lambda_vcpu(lam.memory_mb)
    threads = threads_for(vcpu)
    print(f"{bp.name}: lambda-steps locally: legs of {leg_s} s (timeout_s {lam.timeout_s} - leg_margin_s "
          f"{lam.leg_margin_s}) in fresh processes; memory_mb {lam.memory_mb} = {vcpu:.2f} vCPU of Lambda CPU "
          f"share -> {threads} local thread(s); store {store_url}", file=sys.stderr, flush=True)
    runtime("train", ["--store", store_url, "--leg-seconds", str(leg_s),
                      "--cost-per-second", repr(cost_per_second(bp)), *spec_flags(run_spec(bp))], threads=threads)
    legs = leg_statuses(store_url)
    billed = [sum(leg["seconds"].values()) for leg in legs]
    lines = lambda_legs_cost(bp, billed)
    total = sum(line.usd for line in lines)
    summary = read_json(store_url, SUMMARY_KEY) or {}
    print(f"\nthe same {len(legs)} leg(s) on AWS ({bp.region}, {lam.memory_mb} MB {lam.architecture}, measured "
          f"{sum(billed):.1f} billed seconds on this machine):\n{format_lines(lines, total)}", file=sys.stderr)
    _budget(bp, total)
    return {**summary, "legs": len(legs), "billed_seconds": billed, "cloud_cost_usd": total}


def _budget(bp: Blueprint, total: float) -> None:
    if bp.budget_usd is not None:
        verdict = "within" if total <= bp.budget_usd else "OVER"
        print(f"budget_usd {bp.budget_usd:g}: {verdict} budget", file=sys.stderr)
