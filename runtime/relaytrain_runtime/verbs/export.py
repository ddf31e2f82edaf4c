"""`export`: write the latest weights and tokenizer as a Hugging Face model directory."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--out", required=True, help="directory to write (created; an earlier export is replaced)")
    parser.add_argument("--format", choices=["hf"], default="hf", help="hf: Hugging Face transformers directory")


def run(args) -> int:
    from relaytrain_runtime.export import export_hf

    path = export_hf(args.store, args.out)
    print(json.dumps({"out": str(path), "format": args.format}))
    return 0
