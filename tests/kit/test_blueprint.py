"""Blueprint loading: the public API, defaults, line numbers, all problems at once, the CLI."""

import subprocess
import sys

import pytest

from relaytrain.blueprint import Blueprint, BlueprintError, catalog_files, load, load_all, loads
from relaytrain_runtime import RelayError

MINIMAL = "name: demo-run\ncloud: aws\ntopology: lambda-steps\n"


def test_minimal_blueprint_gets_opinionated_defaults():
    bp = loads(MINIMAL)
    assert isinstance(bp, Blueprint)
    assert bp.region == "us-east-1"
    assert bp.lambda_ is not None and bp.lambda_.memory_mb == 10240 and bp.lambda_.timeout_s == 900
    assert bp.training.run_spec().preset == "tiny-gpt"
    gce = loads("name: demo-run\ncloud: gcp\ntopology: gpu-node\n")
    assert (gce.region, gce.gpu.instance_type, gce.gpu.accelerator_type, gce.gpu.zone) == (
        "us-central1", "n1-standard-8", "nvidia-tesla-v100", "us-central1-a")
    hybrid = loads("name: demo-run\ncloud: aws\ntopology: hybrid\n")
    assert hybrid.gpu.instance_type == "p3.2xlarge" and hybrid.preprocess and hybrid.evaluate


def test_catalog_has_the_named_blueprints():
    names = {p.stem for p in catalog_files()}
    assert {"bert-base-lambda-steps", "gpt2-small-function-shards", "bert-large-ec2-gpu", "gpt2-small-gce-gpu",
            "hybrid-aws", "tiny-gpt-lambda-steps", "tiny-gpt-function-shards", "tiny-hybrid-aws"} <= names
    for bp, path in zip(load_all(catalog_files()), catalog_files(), strict=True):
        assert bp.name == path.stem


def test_all_problems_at_once_sorted_by_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: demo-run\ncloud: aws\ntopology: lambda-steps\nlambda:\n  memroy_mb: 5\n"
                    "training:\n  steps: many\n")
    with pytest.raises(BlueprintError) as err:
        load(path)
    assert isinstance(err.value, RelayError)
    assert err.value.problems == [
        f"{path}:5: lambda.memroy_mb: unknown key 'memroy_mb' (did you mean 'memory_mb'? accepted: memory_mb, "
        "timeout_s, ephemeral_mb, architecture, image_size_mb, leg_margin_s, retries, max_concurrency)",
        f"{path}:7: training.steps: expected an integer, got 'many' (str)",
    ]
    assert str(err.value) == "\n".join(err.value.problems)


def test_load_all_reports_every_file_before_any_result(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a1\ncloud: aws\ntopology: lambda-steps\n")
    (tmp_path / "b.yaml").write_text("name: b\ncloud: aws\ntopology: lambda-steps\nbudget_usd: -1\n")
    with pytest.raises(BlueprintError) as err:
        load_all([tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"])
    text = str(err.value)
    assert "a.yaml:1: name:" in text and "b.yaml:1: name:" in text and "b.yaml:4: budget_usd: must be > 0" in text
    assert f"{tmp_path / 'c.yaml'}:1: (file): no such blueprint file" in text


def test_yaml_12_floats_are_numbers():
    bp = loads(MINIMAL + "training:\n  lr: 3e-4\n  min_lr: 1E-5\n")
    assert bp.training.lr == 3e-4 and bp.training.min_lr == 1e-5


def test_validate_cli_exit_codes_and_one_line_per_problem(tmp_path):
    good = catalog_files()[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: demo-run\ncloud: aws\ntopology: lambda-steps\nlambda:\n  timeout_s: 901\n  timeout_s: 5\n")
    ok = subprocess.run([sys.executable, "-m", "relaytrain", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok" in ok.stdout
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "validate", str(good), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert f"{bad}:6: lambda.timeout_s: duplicate key 'timeout_s' (first set on line 5)" in lines[0]
    assert lines[-1] == "relaytrain validate: 1 problem(s)"


def test_blueprint_planner_and_local_runner_never_import_torch():
    code = ("import relaytrain.blueprint, relaytrain.plan, relaytrain.plan.report, relaytrain.localrun.calibrate, "
            "relaytrain.localrun, relaytrain.localrun.legs, relaytrain.localrun.node, relaytrain.localrun.hybrid, "
            "relaytrain.commands.validate, relaytrain.commands.plan, relaytrain.commands.run, relaytrain.prices, "
            "relaytrain.worker, relaytrain.plan.sfn\n"
            "import sys, json; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    mods = {m.split(".")[0] for m in __import__("json").loads(out.strip().splitlines()[-1])}
    assert not {"torch", "aws_cdk", "pulumi", "matplotlib"} & mods
