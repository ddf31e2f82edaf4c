"""Can the deployed roles read the blueprint's dataset (`dataset_problems`, a pure check of `training.dataset`),
and are its preparation settings valid (`preparation_problems`, `dataset:`)?

What the stacks grant (one place each: aws/stack.py, gcp/components.py):
- AWS: the trainer, node and evaluator roles read `s3://BUCKET/data/` (and their own run under
  `runs/`), BUCKET being `dataset.bucket`, or the bucket the stack creates;
- GCP: the workers' service accounts read and write objects of `gs://BUCKET/` only.
A bucket the stack creates is named at deploy time, so a prepared dataset must live in an existing
bucket named by `dataset.bucket`. `stdlib` is built inside the run's store; `file://` is this
machine's disk, for local runs (`relaytrain run --local`).
"""

from __future__ import annotations

from relaytrain_runtime.contract.prepare import BPE, MIN_VOCAB_SIZE, PRETRAINED, val_fraction_problem

SCHEME = {"aws": "s3", "gcp": "gs"}


def readable_prefix(cloud: str, bucket: str) -> str:
    """The URL prefix under which the deployed roles can read a dataset."""
    from relaytrain.worker import DATA_PREFIX  # here: relaytrain.worker imports the blueprint package

    name = bucket or "<the stack's bucket>"
    return f"s3://{name}/{DATA_PREFIX}" if cloud == "aws" else f"gs://{name}/"


def dataset_problems(cloud: str, bucket: str, dataset: str) -> list[tuple[tuple, str]]:
    """[] when the deployed roles can read `dataset`, else one (path, message) naming what they can read."""
    if dataset == "stdlib" or dataset.startswith("file://") or cloud not in SCHEME:
        return []
    prefix = readable_prefix(cloud, bucket)
    if not bucket:
        why = (f"the stack creates its bucket at deploy time, so a prepared dataset must be in an existing bucket: "
               f"set dataset.bucket, and put the dataset under {prefix}")
    elif dataset.startswith(prefix) and len(dataset) > len(prefix):
        return []
    else:
        why = f"the deployed roles can read datasets only under {prefix}"
    return [(("training", "dataset"), f"{dataset} is outside what the {cloud} workers can read: {why}")]


PREPARATION = ("format", "field", "tokenizer", "vocab_size", "val_fraction")


def preparation_problems(bp, model_vocab: int | None) -> list[tuple[tuple, str]]:
    """(path, message) for each invalid `dataset:` preparation setting. They are applied by the hybrid
    topology's preprocessing; `model_vocab` is the model's vocabulary (None when the spec is invalid)."""
    d, defaults = bp.dataset, type(bp.dataset)()
    if bp.topology != "hybrid":
        return [(("dataset", name), f"is used by the hybrid topology's preprocessing only; for {bp.topology}, "
                                    "prepare the dataset with `relaytrain data prepare` and set training.dataset")
                for name in PREPARATION if getattr(d, name) != getattr(defaults, name)]
    problems = []
    if d.field and d.format == "text":
        problems.append((("dataset", "field"), "names a record field, but format text has one document per object "
                                               "(use jsonl, parquet or hf)"))
    if model_vocab is not None and d.vocab_size and not MIN_VOCAB_SIZE <= d.vocab_size <= model_vocab:
        problems.append((("dataset", "vocab_size"), f"must be 0 (the model's {model_vocab}) or between "
                                                    f"{MIN_VOCAB_SIZE} and {model_vocab}, got {d.vocab_size}"))
    if val_fraction_problem(d.val_fraction):
        problems.append((("dataset", "val_fraction"), val_fraction_problem(d.val_fraction)))
    problems += _tokenizer_problems(bp)
    return problems


def _tokenizer_problems(bp) -> list[tuple[tuple, str]]:
    d = bp.dataset
    if d.tokenizer == BPE:
        return []
    if d.tokenizer == PRETRAINED:
        if bp.training.init_from:
            return []
        return [(("dataset", "tokenizer"), f"is {PRETRAINED}, but training.init_from names no pretrained model "
                                           f"to take it from; set training.init_from or use {BPE}")]
    # the preprocess role reads the raw prefix only (store.confine.check_source confines the event to it)
    prefix = f"s3://{d.bucket or '<dataset.bucket>'}/{d.raw_prefix}"
    if d.bucket and d.tokenizer.startswith(prefix) and d.tokenizer.endswith(".json"):
        return []
    where = "set dataset.bucket (the stack's own bucket is named at deploy time) and " if not d.bucket else ""
    return [(("dataset", "tokenizer"), f"must be {BPE}, {PRETRAINED}, or a tokenizer.json URL the preprocess "
                                       f"role can read: {where}put it under {prefix}, got {d.tokenizer!r}")]
