"""Can the deployed roles read the blueprint's dataset? A pure check of `training.dataset`.

What the stacks grant (one place each: aws/stack.py, gcp/components.py):
- AWS: the trainer, node and evaluator roles read `s3://BUCKET/data/` (and their own run under
  `runs/`), BUCKET being `dataset.bucket`, or the bucket the stack creates;
- GCP: the workers' service accounts read and write objects of `gs://BUCKET/` only.
A bucket the stack creates is named at deploy time, so a prepared dataset must live in an existing
bucket named by `dataset.bucket`. `stdlib` is built inside the run's store; `file://` is this
machine's disk, for local runs (`relaytrain run --local`).
"""

from __future__ import annotations

from relaytrain.worker import DATA_PREFIX

SCHEME = {"aws": "s3", "gcp": "gs"}


def readable_prefix(cloud: str, bucket: str) -> str:
    """The URL prefix under which the deployed roles can read a dataset."""
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
