"""`init`: write the run spec into the store and build the stdlib dataset (idempotent for an identical spec)."""

from __future__ import annotations

import json

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import ensure_dataset
from relaytrain_runtime.store import open_store
from relaytrain_runtime.verbs._common import add_spec_arguments, spec_from_args


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run (file:///abs/path)")
    add_spec_arguments(parser, required=True)


def run(args) -> int:
    spec = spec_from_args(args)
    store = open_store(args.store)
    created = Baton(store).init(spec)
    manifest = ensure_dataset(store, spec)
    print(json.dumps({"store": store.url, "created": created, "spec_digest": spec.digest(),
                      "dataset_tokens": {k: sum(s["tokens"] for s in v) for k, v in manifest["splits"].items()}}))
    return 0
