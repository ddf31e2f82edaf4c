"""`node`: train continuously on a GPU/VM node with periodic checkpoints; SIGTERM-safe; DDP under torchrun."""

from __future__ import annotations

import json
import math
import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run (s3://, gs:// or file://)")
    parser.add_argument("--checkpoint-every", type=float, default=600.0, metavar="SECONDS",
                        help="commit a checkpoint at least this often (default 600)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps (default: run to the end)")
    parser.add_argument("--instance-type", default=None,
                        help="accrue this instance's price (relaytrain_runtime.pricing), e.g. g5.xlarge")
    parser.add_argument("--spot", action="store_true", help="with --instance-type: use the spot price")
    parser.add_argument("--cost-per-second", type=float, default=None,
                        help="USD per second of the whole job (overrides --instance-type)")
    parser.add_argument("--cache-dir", default=None, help="local directory caching the dataset shards")
    parser.add_argument("--poweroff-when-done", action="store_true",
                        help="power the machine off once the run is done (RELAYTRAIN_POWEROFF_CMD, "
                             "default 'sudo shutdown -h now')")
    parser.add_argument("--progress", action="store_true", help="print '@progress {json}' lines to stderr per step")
    parser.add_argument("--tensorboard", metavar="DIR", default=None,
                        help="write TensorBoard event files here after each commit "
                             "(default: $RELAYTRAIN_TENSORBOARD_DIR)")
    parser.add_argument("--mlflow", metavar="URI", default=None,
                        help="log the stream to this MLflow tracking URI after each commit "
                             "(default: $RELAYTRAIN_MLFLOW_URI; needs mlflow-skinny)")


def run(args) -> int:
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.pricing import INSTANCE_HOURLY_USD, instance_cost_per_second

    if not (math.isfinite(args.checkpoint_every) and args.checkpoint_every > 0):
        raise RelayError(f"--checkpoint-every must be > 0 seconds (finite), got {args.checkpoint_every}")
    if args.cost_per_second is not None and not (math.isfinite(args.cost_per_second) and args.cost_per_second >= 0):
        raise RelayError(f"--cost-per-second must be a finite number >= 0, got {args.cost_per_second}")
    if args.max_steps is not None and args.max_steps < 1:
        raise RelayError(f"--max-steps must be >= 1, got {args.max_steps}")
    cost = args.cost_per_second
    if cost is None and args.instance_type:
        if args.instance_type not in INSTANCE_HOURLY_USD:
            raise RelayError(f"--instance-type {args.instance_type!r} has no price in relaytrain_runtime.pricing "
                             f"(known: {', '.join(INSTANCE_HOURLY_USD)}); pass --cost-per-second instead")
        machines = int(os.environ.get("WORLD_SIZE", "1")) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        cost = instance_cost_per_second(args.instance_type, spot=args.spot, count=max(machines, 1))

    from relaytrain_runtime.leg import progress_printer
    from relaytrain_runtime.node import run_node

    status = run_node(args.store, checkpoint_every=args.checkpoint_every, max_steps=args.max_steps,
                      cost_per_second=cost or 0.0, cache_dir=args.cache_dir,
                      poweroff_when_done=args.poweroff_when_done,
                      on_step=progress_printer() if args.progress else None,
                      tensorboard_dir=args.tensorboard, mlflow_uri=args.mlflow)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(status, sort_keys=True), file=sys.stdout, flush=True)
    return 0
