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


HYBRID = ("name: prep-run\ncloud: aws\ntopology: hybrid\ngpu: {instance_type: g4dn.xlarge}\npreprocess: {}\n"
          "evaluate: {}\ntraining: {preset: tiny-gpt}\n")


@pytest.mark.parametrize("dataset, expected", [
    ("{vocab_size: 9000}", "bp.yaml:8: dataset.vocab_size: must be 0 (the model's 4096) or between 259 and 4096, "
                           "got 9000"),
    ("{val_fraction: 1.5}", "bp.yaml:8: dataset.val_fraction: must be in [0, 1)"),
    ("{format: text, field: body}", "bp.yaml:8: dataset.field: names a record field, but format text"),
    ("{tokenizer: pretrained}", "dataset.tokenizer: is pretrained, but training.init_from names no pretrained model"),
    ("{bucket: corp, tokenizer: 's3://corp/data/tok.json'}", "put it under s3://corp/raw/, got 's3://corp/data/"),
    ("{tokenizer: 's3://corp/raw/tok.json'}", "set dataset.bucket (the stack's own bucket is named at deploy time)"),
    ("{format: csv}", "bp.yaml:8: dataset.format: "),
])
def test_preparation_settings_are_checked_with_the_limit(dataset, expected):
    with pytest.raises(BlueprintError) as exc:
        loads(HYBRID + f"dataset: {dataset}\n", "bp.yaml")
    (line,) = exc.value.problems
    assert expected in line


def test_preparation_settings_are_refused_where_no_preprocessing_applies_them():
    text = "name: prep-run\ncloud: aws\ntopology: lambda-steps\ndataset:\n  format: jsonl\n"
    with pytest.raises(BlueprintError) as exc:
        loads(text, "bp.yaml")
    (line,) = exc.value.problems
    assert line.startswith("bp.yaml:5: dataset.format: is used by the hybrid topology's preprocessing only")


def test_preparation_is_one_translation_for_the_event_and_the_local_run():
    from relaytrain.worker import preparation, preparation_flags

    bp = loads(HYBRID + "dataset: {bucket: corp, format: jsonl, field: body, val_fraction: 0.1,"
                        " tokenizer: 's3://corp/raw/tok.json'}\n", "bp.yaml")
    assert preparation(bp) == {"format": "jsonl", "field": "body", "tokenizer": "s3://corp/raw/tok.json",
                               "vocab_size": 4096, "val_fraction": 0.1}
    assert preparation_flags(bp) == ["--tokenizer", "s3://corp/raw/tok.json", "--vocab-size", "4096",
                                     "--val-fraction", "0.1", "--format", "jsonl", "--field", "body"]
    assert loads(HYBRID, "bp.yaml").dataset.val_fraction == 0.01  # the runtime's default
