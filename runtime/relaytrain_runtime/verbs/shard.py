"""`shard`: one data-parallel shard of one round (function-shards topology); prints one JSON line."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--round", type=int, required=True, help="the round to compute (0-based)")
    parser.add_argument("--shard", type=int, required=True, help="this shard's index k (0..K-1)")
    parser.add_argument("--shards", type=int, default=None, help="K, checked against the run's functions.shards")
    parser.add_argument("--spec-json", default=None, help="run spec (JSON object) to initialise the run with")
    parser.add_argument("--functions-json", default=None, help="functions: settings (JSON object) to initialise the run with")
    parser.add_argument("--max-seconds", type=float, default=None, help="invocation time box (deadline)")
    parser.add_argument("--cost-per-second", type=float, default=0.0, help="USD per second of this worker (accrued)")


def event_base(args, op: str) -> dict:
    from relaytrain_runtime import RelayError

    event = {"op": op, "store": args.store, "cost_per_second": args.cost_per_second}
    for name in ("spec", "functions"):
        raw = getattr(args, f"{name}_json", None)
        if raw is None:
            continue
        try:
            event[name] = json.loads(raw)
        except ValueError as exc:
            raise RelayError(f"--{name}-json is not valid JSON ({exc})") from None
    return event


def run(args) -> int:
    from relaytrain_runtime.leg import deadline_from
    from relaytrain_runtime.shards.entry import shard_op

    event = {**event_base(args, "shard"), "round": args.round, "shard": args.shard, "shards": args.shards}
    status = shard_op(event, deadline_from(args.max_seconds))
    print(json.dumps(status, sort_keys=True), file=sys.stdout, flush=True)
    return 0
