"""`preprocess`: raw text objects under a URL -> token shards and a dataset manifest, all phases here.

In the cloud the same phases run as separate invocations (op `preprocess`, see
relaytrain_runtime.preprocess); here they run in one process, the shard phase on a thread pool.
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--source", required=True, help="URL of the raw text objects (s3://, gs:// or file://)")
    parser.add_argument("--store", required=True, help="URL the dataset goes to (a run spec's `dataset`)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocabulary (<= the model's; default 4096)")
    parser.add_argument("--suffix", default="", help="only source keys ending in this (e.g. .txt)")
    parser.add_argument("--sample-bytes", type=int, default=20_000_000, help="text the tokenizer is trained on")
    parser.add_argument("--workers", type=int, default=4, help="objects tokenized in parallel (default 4)")


def run(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from relaytrain_runtime import RelayError
    from relaytrain_runtime.preprocess import manifest, plan, shard

    if args.vocab_size < 259 or args.sample_bytes < 1 or args.workers < 1:
        raise RelayError("--vocab-size must be >= 259, --sample-bytes and --workers >= 1")
    planned = plan(args.store, args.source, args.vocab_size, args.sample_bytes, args.suffix)
    print(f"tokenizing {planned['count']} objects from {args.source}", file=sys.stderr)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda item: shard(item["store"], item["source"], item["key"]), planned["items"]))
    print(json.dumps(manifest(args.store), sort_keys=True))
    return 0
