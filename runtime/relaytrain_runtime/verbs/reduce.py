"""`reduce`: reduce one round's shard outputs (all pieces, or one with --piece) and commit the next baton;
`--status` reports the round to run next. Prints one JSON line."""

from __future__ import annotations

import json
import sys

from relaytrain_runtime.verbs.shard import event_base


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--round", type=int, default=None, help="the round to reduce (0-based)")
    parser.add_argument("--piece", type=int, default=None, help="reduce only this piece (a parallel reducer); "
                        "the reducer that completes the last piece commits")
    parser.add_argument("--baton", default=None, help="the round's parent digest as the shards reported it")
    parser.add_argument("--no-commit", action="store_true", help="reduce only, never commit")
    parser.add_argument("--status", action="store_true", help="print where the run stands (next round, step, done)")
    parser.add_argument("--spec-json", default=None, help="run spec (JSON object) to initialise the run with")
    parser.add_argument(
        "--functions-json", default=None, help="functions: settings (JSON object) to initialise the run with"
    )
    parser.add_argument("--cost-per-second", type=float, default=0.0, help="USD per second of this worker (accrued)")


def run(args) -> int:
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.shards.entry import reduce_op, status_op

    event = event_base(args, "status" if args.status else "reduce")
    if args.status:
        status = status_op(event)
    else:
        if args.round is None:
            raise RelayError("reduce: --round is required (or --status to ask which round is next)")
        event.update(round=args.round, piece=args.piece, baton=args.baton, commit=not args.no_commit)
        status = reduce_op(event)
    print(json.dumps(status, sort_keys=True), file=sys.stdout, flush=True)
    return 0
