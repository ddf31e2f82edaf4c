"""`export`: write a checkpoint and the tokenizer as a Hugging Face model directory (or a LoRA adapter)."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--out", required=True, help="directory to write (created; an earlier export is replaced)")
    parser.add_argument("--format", choices=["hf"], default="hf", help="hf: Hugging Face transformers directory")
    parser.add_argument("--gen", type=int, default=None, help="checkpoint to export (default: the latest)")
    parser.add_argument("--best", action="store_true",
                        help="export the checkpoint with the lowest validation loss (kept out of pruning)")
    parser.add_argument("--adapter", action="store_true",
                        help="LoRA runs: write the PEFT adapter directory instead of merged weights")


def run(args) -> int:
    from relaytrain_runtime.export import export_hf

    path = export_hf(args.store, args.out, gen=args.gen, adapter=args.adapter, best=args.best)
    print(json.dumps({"out": str(path), "format": args.format, "adapter": args.adapter, "best": args.best}))
    return 0
