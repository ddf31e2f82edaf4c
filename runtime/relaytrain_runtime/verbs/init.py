"""`init`: write the run spec into the store and build the stdlib dataset (idempotent for an identical spec).

With `--init-from DIR_OR_URL` the pretrained directory is checked, then copied into the store once
(base/<sha256>/), and the spec records its digest and shape; the run's tokenizer is the pretrained one.
"""

from __future__ import annotations

import json

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import ensure_dataset
from relaytrain_runtime.store import open_store
from relaytrain_runtime.verbs._common import add_spec_arguments, spec_from_args


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run (file:///abs/path)")
    add_spec_arguments(parser, required=True)


def run(args) -> int:
    from relaytrain_runtime.pretrained import prepare_spec

    if not (args.spec_preset or args.spec_init_from or "family" in (args.spec_model_shape or {})):
        raise RelayError("init needs the model: --preset NAME, --init-from DIR_OR_URL or a full --model-shape")
    spec = spec_from_args(args)
    store = open_store(args.store)
    store.check()
    spec = prepare_spec(store, spec)  # a pretrained start: checked, then its base stored once
    created = Baton(store).init(spec)
    manifest = ensure_dataset(store, spec)
    print(json.dumps({"store": store.url, "created": created, "spec_digest": spec.digest(),
                      "init_sha256": spec.init_sha256 or None,
                      "dataset_tokens": {k: sum(s["tokens"] for s in v) for k, v in manifest["splits"].items()}}))
    return 0
