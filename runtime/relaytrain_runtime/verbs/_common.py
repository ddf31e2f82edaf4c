"""Options shared by the verbs that create a run (`init`, `train`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from relaytrain_runtime.spec import RunSpec

_HELP = {
    "preset": "model preset (tiny-gpt, tiny-bert, gpt2-small, bert-base, bert-large)",
    "steps": "total optimizer steps of the run",
    "seed": "seed of the weights, the batches and the masking",
    "dataset": "'stdlib' (Python's own sources, built locally) or the store URL of a prepared dataset",
    "model_shape": "JSON object: overrides of the preset's shape ({\"n_layers\": 2}) or a full config (with family)",
    "init_from": "pretrained Hugging Face model directory (path, file://, s3:// or gs:// URL); no --preset needed",
    "finetune": "full or lora",
}


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_spec_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """One --option per RunSpec field (--batch-size, --lr, ...); --steps is required for init (and --preset
    unless --init-from or a full --model-shape gives the shape: checked by the verb)."""
    defaults = RunSpec()
    group = parser.add_argument_group("run spec")
    for f in fields(RunSpec):
        flag = "--" + f.name.replace("_", "-")
        kind = type(getattr(defaults, f.name))
        kind = _flag_bool if kind is bool else _json_object if kind is dict else kind
        is_required = required and f.name == "steps"
        group.add_argument(flag, dest=f"spec_{f.name}", type=kind, default=None, required=is_required,
                           metavar=f.name.upper(),
                           help=_HELP.get(f.name, f"run spec field {f.name} (default {getattr(defaults, f.name)!r})"))


def _flag_bool(text: str) -> bool:
    """true/false (also 1/0, yes/no): `bool("False")` would be True."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def spec_from_args(args: argparse.Namespace) -> RunSpec | None:
    """The RunSpec the options ask for; None when no spec option was given at all."""
    given = {f.name: getattr(args, f"spec_{f.name}") for f in fields(RunSpec)}
    given = {k: v for k, v in given.items() if v is not None}
    return RunSpec(**given) if given else None
