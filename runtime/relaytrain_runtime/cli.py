"""`relaytrain-runtime` (and the runtime verbs of `relaytrain`): a thin dispatcher.

Each verb lives in its own module under `relaytrain_runtime.verbs` exposing
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only for the verb that
runs, so `--help` and light verbs never pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys

from relaytrain_runtime import RelayError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "init": ("relaytrain_runtime.verbs.init", "write the run spec into a store (idempotent for an identical spec)"),
    "leg": (
        "relaytrain_runtime.verbs.leg",
        "run exactly one time-boxed leg in this process; print one JSON status line",
    ),
    "train": ("relaytrain_runtime.verbs.train", "local relay: init if needed, then legs in fresh processes until done"),
    "baton": ("relaytrain_runtime.verbs.baton", "show the run's state (step, done, loss, weights digest)"),
    "export": (
        "relaytrain_runtime.verbs.export",
        "write the latest weights and tokenizer as a Hugging Face model directory",
    ),
    "node": (
        "relaytrain_runtime.verbs.node",
        "GPU/VM node: train continuously with periodic checkpoints; SIGTERM-safe",
    ),
    "preprocess": ("relaytrain_runtime.verbs.preprocess", "turn raw text objects into token shards and a manifest"),
    "data": ("relaytrain_runtime.verbs.data", "prepare a dataset from text/JSONL/Parquet/HF sources; inspect one"),
    "evaluate": (
        "relaytrain_runtime.verbs.evaluate",
        "validation loss/perplexity of a checkpoint, written to the store",
    ),
    "shard": ("relaytrain_runtime.verbs.shard", "one data-parallel shard of a round (function-shards topology)"),
    "reduce": ("relaytrain_runtime.verbs.reduce", "reduce one round's shard outputs and commit the next baton"),
}


# options naming a store, a source or a model directory; a bare local path among them (`./corpus`, `c.jsonl`,
# `../runs/x`) becomes its absolute file:// URL here, at the command line, so stores only ever see canonical
# URLs (their '.'/'..' refusal guards events, which never pass through this parser)
LOCATION_OPTIONS = ("store", "source", "url", "val_source", "init_from", "tokenizer")
LOCATION_WORDS = ("bpe", "pretrained", "stdlib")  # keywords, not paths


def absolute_locations(args: argparse.Namespace) -> argparse.Namespace:
    for name in LOCATION_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value and "://" not in value and value not in LOCATION_WORDS:
            setattr(args, name, pathlib.Path(os.path.abspath(os.path.expanduser(value))).as_uri())
    return args


def build_parser(prog: str = "relaytrain-runtime", verbs: dict | None = None,
                 description: str = "relaytrain training runtime") -> tuple[argparse.ArgumentParser, dict]:
    verbs = VERBS if verbs is None else verbs
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_module, help_) in verbs.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser, verbs


def dispatch(argv: list[str], prog: str, verbs: dict[str, tuple[str, str]],
             description: str = "relaytrain training runtime") -> int:
    """Run `prog VERB ...`: load only that verb's module; errors become one clear line."""
    parser, verbs = build_parser(prog, verbs, description)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in verbs:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"{prog}: error: unknown verb {argv[0]!r} (choose one of: {', '.join(verbs)})", file=sys.stderr)
            return 2
        parser.print_help()
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    module_name, help_ = verbs[verb]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"{prog}: error: verb {verb!r} is not available in this install ({exc.name} is missing)", file=sys.stderr)
        return 2
    verb_parser = argparse.ArgumentParser(prog=f"{prog} {verb}", description=help_)
    module.add_arguments(verb_parser)
    args = absolute_locations(verb_parser.parse_args(rest))
    try:
        return int(module.run(args) or 0)
    except RelayError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return dispatch(sys.argv[1:] if argv is None else argv, "relaytrain-runtime", VERBS)


if __name__ == "__main__":
    raise SystemExit(main())
