"""`preprocess --source URL --store URL`: `data prepare SOURCE --store URL` that may rerun into the same store.

In the cloud the same phases run as separate invocations (op `preprocess`, see
relaytrain_runtime.preprocess); here they run in one process, the shard phase on a thread pool.
"""

from __future__ import annotations

import json

from relaytrain_runtime.verbs.data import add_prepare_options, prepare


def add_arguments(parser) -> None:
    parser.add_argument("--source", required=True, help="URL of the source objects (s3://, gs:// or file://)")
    parser.add_argument("--store", required=True, help="URL the dataset goes to (a run spec's `dataset`)")
    add_prepare_options(parser)


def run(args) -> int:
    print(json.dumps(prepare(args, fresh=False), sort_keys=True))  # a rerun (same settings) rewrites the same
    return 0
