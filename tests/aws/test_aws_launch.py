"""`relaytrain launch` / `relaytrain status` against a stack deployed in moto (CloudFormation,
Step Functions, S3), with a real leg committing into the run's S3 store."""

import json
import subprocess
import sys

import boto3

from tests.fixtures.cdk import AWS_TEST_BLUEPRINTS, stack_template_of

STEPS = str(AWS_TEST_BLUEPRINTS / "steps.yaml")


def relaytrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relaytrain", *args], capture_output=True, text=True)


def test_launch_then_status_shows_the_baton(aws_templates, aws_blueprints, cfn_deploy):
    outputs = cfn_deploy(stack_template_of(aws_templates, "test-steps"), "relaytrain-test-steps")["__outputs__"]

    launched = relaytrain("launch", STEPS, "--run", "exp1", "--json")
    assert launched.returncode == 0, launched.stderr
    started = json.loads(launched.stdout)
    assert started["store"] == f"s3://{outputs['BucketName']}/runs/exp1"
    execution = boto3.client("stepfunctions", region_name="us-east-1").describe_execution(
        executionArn=started["execution"]
    )
    assert execution["stateMachineArn"] == outputs["StateMachineArn"] and json.loads(execution["input"]) == {
        "run": "exp1"
    }

    # before any leg: one clear line
    early = relaytrain("status", STEPS, "--run", "exp1")
    assert early.returncode == 2 and "no run at" in early.stderr and len(early.stderr.strip().splitlines()) == 1

    # one real leg of 2 steps into the S3 store, as the state machine's first leg would do
    spec = aws_blueprints["test-steps"].training.run_spec().to_dict()
    code = (
        "import json, sys; from relaytrain_runtime.leg import run_leg; "
        "run_leg(sys.argv[1], spec=json.loads(sys.argv[2]), max_steps=2, cost_per_second=0.01)"
    )
    subprocess.run([sys.executable, "-c", code, started["store"], json.dumps(spec)], check=True, capture_output=True)

    shown = relaytrain("status", STEPS, "--run", "exp1", "--json")
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["step"] == 2 and state["steps"] == 6 and not state["done"] and state["legs"] == 1
    assert state["loss"] > 0 and state["cost_usd"] > 0 and state["tokens"] == 2 * 2 * 32
    assert state["latest_checkpoint"]["manifest"] == f"baton/{state['latest_checkpoint']['gen']:08d}.json"
    assert [e["name"] for e in state["executions"]] == [started["execution"].split(":")[-1]]
    text = relaytrain("status", STEPS, "--run", "exp1")
    assert text.returncode == 0 and "step     2/6" in text.stdout and "legs     1" in text.stdout


def test_launch_errors_are_one_line(aws_templates, cfn_deploy):
    missing = relaytrain("launch", STEPS)
    assert missing.returncode == 2 and "relaytrain-test-steps is not deployed in us-east-1" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    cfn_deploy(stack_template_of(aws_templates, "test-gpu"), "relaytrain-test-gpu")
    gpu = relaytrain("launch", str(AWS_TEST_BLUEPRINTS / "gpu.yaml"))
    assert gpu.returncode == 2 and "has no state machine" in gpu.stderr and len(gpu.stderr.strip().splitlines()) == 1


def test_light_aws_verbs_import_neither_cdk_nor_torch():
    code = (
        "import relaytrain.commands.launch, relaytrain.commands.status, relaytrain.aws.deployed, relaytrain.aws.names, "
        "sys, json; "
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    mods = set(
        json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    )
    assert not {"aws_cdk", "constructs", "jsii", "torch"} & mods
