"""`relaytrain run FILE --local`: a blueprint's topology on this machine, through the runtime.

The kit never imports torch: every piece of training runs as `python -m relaytrain_runtime VERB`
in a fresh process, exactly what a Lambda, a Cloud Function or a VM runs, against one store.

    lambda-steps     legs in fresh processes (relaytrain.localrun.legs)
    gpu-node         one continuous node process with periodic checkpoints (relaytrain.localrun.node)
    hybrid           preprocess -> train -> evaluate (relaytrain.localrun.hybrid)
    function-shards  relaytrain.localrun.shards.run_local, from the shards part of the kit

Each returns a summary whose "cloud_cost" prices the measured seconds at the blueprint's settings.
"""

from __future__ import annotations

import importlib
import sys

from relaytrain.blueprint.schema import Blueprint
from relaytrain_runtime import RelayError
from relaytrain_runtime.store import open_store

RUNNERS = {
    "lambda-steps": "relaytrain.localrun.legs",
    "gpu-node": "relaytrain.localrun.node",
    "hybrid": "relaytrain.localrun.hybrid",
    "function-shards": "relaytrain.localrun.shards",
}


def run_local(bp: Blueprint, store_url: str) -> dict:
    open_store(store_url)  # a malformed URL fails here, before any process starts
    module_name = RUNNERS[bp.topology]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise RelayError(f"{bp.name}: running {bp.topology} locally needs {module_name}, which this install "
                         "does not have yet (it comes with the function-shards runtime)") from None
    if bp.topology != "function-shards":
        return module.run_local(bp, store_url)
    summary = module.run_local(bp, store_url, log=lambda line: print(line, file=sys.stderr, flush=True))
    return {**summary, "cloud_cost_usd": _functions_report(bp, summary)}


def _functions_report(bp: Blueprint, summary: dict) -> float:
    from relaytrain.plan import functions_cost
    from relaytrain.plan.report import format_lines

    busy = summary["shard_seconds"] + summary["reduce_seconds"]
    lines = functions_cost(bp, busy, summary["rounds"])
    total = sum(line.usd for line in lines)
    print(f"\nthe same {summary['rounds']} round(s) on Cloud Functions ({bp.region}, {bp.functions.shards} x "
          f"{bp.functions.vcpu} vCPU / {bp.functions.memory_gib:g} GiB, measured {busy:.1f} function-seconds on "
          f"this machine):\n{format_lines(lines, total)}", file=sys.stderr)
    return total
