"""The verdict of `relaytrain plan --compare`: cheapest and fastest topology, and where serverless breaks even.

    verdict(plans, workers) -> list[str]

Pure function of the plans. The break-even throughput assumes a serverless plan's cost is
proportional to its compute time (per-second billing at a fixed worker size), so a worker
`cost / cheapest_gpu_cost` times faster would cost the same as the cheapest GPU node.
"""

from __future__ import annotations

SERVERLESS = ("lambda-steps", "function-shards")
NODE_START_S = 300.0  # the planner's VM boot + setup assumption (relaytrain.plan.devices.COLD_START_S["vm"])


def worker_count(bp) -> int:
    """Workers a blueprint's throughput is spread over: 1 Lambda, its shards, or every GPU of its nodes."""
    from relaytrain.blueprint import limits

    if bp.topology == "lambda-steps":
        return 1
    if bp.topology == "function-shards":
        return bp.functions.shards
    _gpu, count = limits.gpu_of(bp.cloud, bp.gpu.instance_type, bp.gpu.accelerator_type, bp.gpu.accelerator_count)
    return max(count, 1) * bp.gpu.nodes


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h"


def verdict(plans: list, workers: list[int]) -> list[str]:
    """Lines ending the comparison. `plans`: Plan objects (topology, total_usd, wall_s, worker_flops); `workers`:
    how many workers each plan's worker_flops is spread over (1 Lambda, N shards, GPUs of the nodes)."""
    if not plans:
        return ["verdict: no topology can run this job (see the errors above)"]
    by_cost = sorted(plans, key=lambda p: p.total_usd)
    by_time = sorted(plans, key=lambda p: p.wall_s)
    cheap, fast = by_cost[0], by_time[0]
    out = [f"verdict: cheapest {cheap.name} ({cheap.topology}) at ${cheap.total_usd:,.2f}"
           + (f", {_ratio(by_cost[1].total_usd, cheap.total_usd)} cheaper than the next, {by_cost[1].name} "
              f"(${by_cost[1].total_usd:,.2f})" if len(by_cost) > 1 else ""),
           f"verdict: fastest {fast.name} ({fast.topology}) in {_hours(fast.wall_s)}"
           + (f", {_ratio(by_time[1].wall_s, fast.wall_s)} faster than the next, {by_time[1].name} "
              f"({_hours(by_time[1].wall_s)})" if len(by_time) > 1 else "")]
    gpus = [p for p in plans if p.topology not in SERVERLESS]
    if not gpus:
        return out
    gpu = min(gpus, key=lambda p: p.total_usd)
    for p, n in zip(plans, workers, strict=True):
        if p.topology not in SERVERLESS or gpu.total_usd <= 0:
            continue
        same_cloud = [g for g in gpus if g.cloud == p.cloud]
        per_worker = p.worker_flops / max(n, 1)
        need = per_worker * p.total_usd / gpu.total_usd
        if p.total_usd <= gpu.total_usd:
            out.append(f"verdict: {p.name} already costs no more than {gpu.name} at {per_worker / 1e9:,.0f} GFLOP/s "
                       "per worker")
        else:
            out.append(f"verdict: {p.name} would break even with {gpu.name} at {need / 1e9:,.0f} GFLOP/s per worker "
                       f"(planned {per_worker / 1e9:,.0f} GFLOP/s, {_ratio(need, per_worker)} more)")
            if same_cloud:  # a run moves within one cloud's store
                out.append(_moving(p, min(same_cloud, key=lambda g: g.total_usd)))
    return out


def _moving(serverless, gpu) -> str:
    """When moving a serverless run onto the GPU node (same store, from any commit) pays: once the work left
    would cost more serverless than on the node plus the node's start-up."""
    start_usd = gpu.total_usd / gpu.wall_s * NODE_START_S if gpu.wall_s > 0 else 0.0
    saving = serverless.total_usd - gpu.total_usd
    share = min(start_usd / saving, 1.0) if saving > 0 else 1.0
    return (f"verdict: moving {serverless.name} onto {gpu.name} from the same store pays while more than "
            f"{share:.1%} of the job is left (the node's ~{NODE_START_S:.0f} s start costs ${start_usd:,.2f}); "
            "e.g. preprocess and the first steps serverless while the node boots, the bulk on the GPU")
