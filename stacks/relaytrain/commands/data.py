"""`relaytrain data prepare|inspect`: the runtime's data verb, plus `--blueprint FILE` for prepare.

With a blueprint, the target store is first checked against what that blueprint's deployed roles
can read (relaytrain.blueprint.dataset), so a dataset is never prepared where the run cannot read it,
and `--tokenizer pretrained` takes the blueprint's `training.init_from` as its model.
Preparing needs numpy and tokenizers (pyarrow / datasets for those formats), never torch.
"""

from __future__ import annotations

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.prepare import PRETRAINED
from relaytrain_runtime.verbs import data as runtime_data


def add_arguments(parser) -> None:
    runtime_data.add_arguments(parser)["prepare"].add_argument("--blueprint", default=None, metavar="FILE",
                         help="refuse a --store this blueprint's deployed workers cannot read")


def run(args) -> int:
    if args.action == "prepare" and args.blueprint:
        from relaytrain.blueprint import BlueprintError, load
        from relaytrain.blueprint.dataset import dataset_problems

        try:
            bp = load(args.blueprint)
        except BlueprintError as exc:
            raise RelayError(f"{args.blueprint}: not a valid blueprint ({len(exc.problems)} problem(s); "
                             f"`relaytrain validate {args.blueprint}` lists them)") from None
        for _, message in dataset_problems(bp.cloud, bp.dataset.bucket, args.store):
            raise RelayError(f"--store {message}")
        if args.tokenizer == PRETRAINED and not args.init_from:
            if not bp.training.init_from:
                raise RelayError(f"--tokenizer {PRETRAINED}: {args.blueprint} has no training.init_from (the model "
                                 "the run starts from); set it, or add --init-from DIR")
            args.init_from = bp.training.init_from
    elif args.action == "prepare" and args.tokenizer == PRETRAINED and not args.init_from:
        raise RelayError(f"--tokenizer {PRETRAINED} uses the tokenizer of the model the run starts from: add "
                         "--blueprint FILE (its training.init_from) or --init-from DIR")
    return runtime_data.run(args)
