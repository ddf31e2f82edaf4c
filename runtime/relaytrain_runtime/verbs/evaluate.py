"""`evaluate`: validation loss and perplexity of a checkpoint, written to eval/<gen>.json in the store."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--gen", type=int, default=None, help="checkpoint gen (default: the newest that verifies)")
    parser.add_argument("--batches", type=int, default=None, help="held-out batches (default: the spec's eval_batches)")
    parser.add_argument("--split", default="val", choices=("val", "train"), help="dataset split (default val)")
    parser.add_argument("--cache-dir", default=None, help="local directory caching the dataset shards")


def run(args) -> int:
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.evaluate import evaluate_checkpoint

    for name in ("gen", "batches"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise RelayError(f"--{name} must be >= 1, got {getattr(args, name)}")
    print(
        json.dumps(evaluate_checkpoint(args.store, args.gen, args.batches, args.split, args.cache_dir), sort_keys=True)
    )
    return 0
