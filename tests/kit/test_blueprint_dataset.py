"""Blueprint check: a training.dataset the deployed roles cannot read is refused at validation, naming the prefix."""

import pytest

from relaytrain.blueprint import BlueprintError, loads
from relaytrain.blueprint.dataset import dataset_problems, readable_prefix


@pytest.mark.parametrize("cloud, bucket, dataset, ok", [
    ("aws", "", "stdlib", True),
    ("aws", "mine", "s3://mine/data/books", True),
    ("aws", "mine", "s3://mine/raw/books", False),  # the roles read data/ only
    ("aws", "mine", "s3://other/data/books", False),
    ("aws", "", "s3://mine/data/books", False),  # a stack-created bucket has no name before deploy
    ("aws", "mine", "gs://mine/data/books", False),
    ("gcp", "mine", "gs://mine/any/prefix", True),
    ("gcp", "mine", "gs://minex/any", False),
    ("gcp", "mine", "s3://mine/data/x", False),
    ("gcp", "", "file:///tmp/local", True),  # local runs
])
def test_dataset_must_be_under_the_readable_prefix(cloud, bucket, dataset, ok):
    problems = dataset_problems(cloud, bucket, dataset)
    assert (problems == []) is ok
    if not ok:
        (path, message), = problems
        assert path == ("training", "dataset") and readable_prefix(cloud, bucket) in message and dataset in message


def test_validation_names_the_file_line_and_prefix():
    text = ("name: demo-run\ncloud: aws\ntopology: lambda-steps\ndataset: {bucket: corp-data}\n"
            "training:\n  dataset: s3://corp-data/raw/books\n")
    with pytest.raises(BlueprintError) as exc:
        loads(text, "bp.yaml")
    (line,) = exc.value.problems
    assert line.startswith("bp.yaml:6: training.dataset: s3://corp-data/raw/books is outside")
    assert "only under s3://corp-data/data/" in line
    assert loads(text.replace("/raw/", "/data/"), "bp.yaml").training.dataset == "s3://corp-data/data/books"
