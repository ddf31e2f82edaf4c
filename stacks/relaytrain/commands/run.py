"""`relaytrain run FILE --local [--store URL]`: run a blueprint's topology on this machine.

The blueprint is validated first (nothing starts, nothing is written on a bad one); then the
topology runs through the runtime in child processes against the store, and the end report says
what the same work would have cost on the cloud from the measured seconds. With `tracking: {mlflow: URI}`
each commit is logged there live (the local relay after each leg, a gpu-node's node process after each
commit) and the whole stream once more at the end (idempotent by step).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

from relaytrain.blueprint import BlueprintError, load
from relaytrain_runtime import RelayError


def add_arguments(parser) -> None:
    parser.add_argument("file", help="blueprint file")
    parser.add_argument("--local", action="store_true", help="run on this machine (required: the only mode so far)")
    parser.add_argument("--store", help="store URL of the run (default: file://$PWD/runs/<blueprint name>)")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON on stdout")


def run(args) -> int:
    try:
        bp = load(args.file)
    except BlueprintError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    if not args.local:
        raise RelayError("relaytrain run needs --local (deployed runs start with `relaytrain launch`)")
    store = args.store or (pathlib.Path.cwd() / "runs" / bp.name).as_uri()
    if bp.tracking.mlflow:  # refused before training, not after it
        from relaytrain_runtime.report.tracking import require_mlflow

        require_mlflow()
    from relaytrain.localrun import run_local
    from relaytrain.worker import node_environment

    os.environ.update(node_environment(bp))  # the local node process logs each commit live, like a deployed one
    summary = run_local(bp, store)
    if bp.tracking.mlflow:
        from relaytrain_runtime.report.tracking import log_to_mlflow
        from relaytrain_runtime.report.view import load_run

        summary["mlflow"] = log_to_mlflow(load_run(store), bp.tracking.mlflow)
        print(f"mlflow run {summary['mlflow']['run_id']} at {bp.tracking.mlflow}: up to step "
              f"{summary['mlflow']['last_step']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    return 0
