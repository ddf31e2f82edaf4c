"""`leg`: run exactly one time-boxed leg in this process and print one JSON status line."""

from __future__ import annotations

import json
import math
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="time box counted from process start: commit before it closes (default: no limit)")
    parser.add_argument("--max-steps", type=int, default=None, help="train at most this many steps in this leg")
    parser.add_argument("--cost-per-second", type=float, default=0.0, help="USD per second of this worker (accrued)")
    parser.add_argument("--cache-dir", default=None, help="local directory caching the dataset shards")
    parser.add_argument("--progress", action="store_true", help="print '@progress {json}' lines to stderr per step")


def run(args) -> int:
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.leg import deadline_from, progress_printer, run_leg

    if args.max_steps is not None and args.max_steps < 1:
        raise RelayError(f"--max-steps must be >= 1, got {args.max_steps}")
    if not (math.isfinite(args.cost_per_second) and args.cost_per_second >= 0):
        raise RelayError(f"--cost-per-second must be a finite number >= 0, got {args.cost_per_second}")
    status = run_leg(args.store, deadline=deadline_from(args.max_seconds), max_steps=args.max_steps,
                     cost_per_second=args.cost_per_second, cache_dir=args.cache_dir,
                     on_step=progress_printer() if args.progress else None)
    print(json.dumps(status, sort_keys=True), file=sys.stdout, flush=True)
    return 0
