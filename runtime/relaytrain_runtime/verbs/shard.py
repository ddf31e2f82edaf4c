"""`shard`: one data-parallel shard of one round (function-shards topology); prints one JSON line.

`shard --serve` is a warm function instance instead: it reads events (shard, reduce or status ops,
one JSON object per line) from stdin and answers each with one JSON line on stdout, until EOF.
A RelayError becomes {"error": {"type", "message", "op"}}, as the cloud handlers return it."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--serve", action="store_true", help="serve JSON-line events from stdin (a warm instance)")
    parser.add_argument("--store", help="store URL of the run")
    parser.add_argument("--round", type=int, help="the round to compute (0-based)")
    parser.add_argument("--shard", type=int, help="this shard's index k (0..K-1)")
    parser.add_argument("--shards", type=int, default=None, help="K, checked against the run's functions.shards")
    parser.add_argument("--spec-json", default=None, help="run spec (JSON object) to initialise the run with")
    parser.add_argument(
        "--functions-json", default=None, help="functions: settings (JSON object) to initialise the run with"
    )
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


def serve(stdin=sys.stdin, stdout=sys.stdout) -> int:
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.shards.entry import reduce_op, shard_op, status_op

    ops = {"shard": shard_op, "reduce": reduce_op, "status": status_op}
    for line in stdin:
        if not line.strip():
            continue
        op = None
        try:
            event = json.loads(line)
            op = event.get("op") if isinstance(event, dict) else None
            if op not in ops:
                raise RelayError(f"unknown op {op!r} (expected one of: {', '.join(ops)})")
            out = ops[op](event, event.get("deadline"))
        except ValueError as exc:
            out = {"error": {"type": "BadEvent", "message": f"event is not valid JSON ({exc})", "op": op}}
        except RelayError as exc:
            out = {"error": {"type": type(exc).__name__, "message": str(exc), "op": op}}
        print(json.dumps(out, sort_keys=True), file=stdout, flush=True)
    return 0


def run(args) -> int:
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.leg import deadline_from
    from relaytrain_runtime.shards.entry import shard_op

    if args.serve:
        return serve()
    missing = [f"--{name}" for name in ("store", "round", "shard") if getattr(args, name) is None]
    if missing:
        raise RelayError(f"shard: {', '.join(missing)} required (or --serve)")

    event = {**event_base(args, "shard"), "round": args.round, "shard": args.shard, "shards": args.shards}
    status = shard_op(event, deadline_from(args.max_seconds))
    print(json.dumps(status, sort_keys=True), file=sys.stdout, flush=True)
    return 0
