"""Orchestration proof: the synthesized state machine runs in moto's Step Functions interpreter,
every Lambda task served by the real handler (awslambdaric, the image's CMD) against moto's S3.

The run must end `done` with weights bitwise equal to the same run relayed locally (file://);
the budget stop and the continue-as-new hop are exercised the same way.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.fixtures.cdk import moto_config, stack_template_of


def baton(store: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "baton", "--store", store, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def local_relay(aws_blueprints, tmp_path_factory):
    """The test-steps run trained locally (file://) in one leg: the cloud runs below are cut into
    legs differently (time-boxed, or 2 steps each), so equality also proves the cut does not matter."""
    spec = aws_blueprints["test-steps"].training.run_spec().to_dict()
    store = f"file://{tmp_path_factory.mktemp('relay')}/run"
    code = ("import json, sys; from relaytrain_runtime.leg import run_leg; "
            "print(json.dumps(run_leg(sys.argv[1], spec=json.loads(sys.argv[2]))))")
    status = json.loads(subprocess.run([sys.executable, "-c", code, store, json.dumps(spec)],
                                       check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    assert status["done"]
    return baton(store)


def states_entered(execution: dict) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in execution["history"] if "stateEnteredEventDetails" in e]


def test_state_machine_trains_to_done_equal_to_local_relay(sfn_harness, aws_templates, local_relay):
    deployed = sfn_harness.deploy(stack_template_of(aws_templates, "test-steps"), "relaytrain-test-steps")
    executions = sfn_harness.run(deployed.state_machine_arn, {"run": "test-steps"})
    assert [e["status"] for e in executions] == ["SUCCEEDED"]
    assert "RunDone" in states_entered(executions[0])
    legs = [i for i in sfn_harness.invocations if i["event"].get("op") == "leg"]
    assert legs and all(i["ok"] for i in legs)
    assert legs[0]["event"]["spec"]["steps"] == 6 and legs[0]["event"]["store"] == deployed.store
    final = baton(deployed.store)
    assert deployed.store == f"s3://{deployed.bucket}/runs/test-steps"
    assert final["done"] and final["step"] == local_relay["step"] == 6
    assert final["weights_sha256"] == local_relay["weights_sha256"]
    # after every leg the state machine published the run's metrics
    import boto3

    metrics = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(Namespace="relaytrain")["Metrics"]
    published = {m["MetricName"] for m in metrics if {"Name": "Run", "Value": "test-steps"} in m["Dimensions"]}
    assert {"Loss", "Step", "Tokens", "CostUsd", "Legs"} <= published


def test_continue_as_new_hops_and_still_matches(sfn_harness, aws_hop_templates, local_relay):
    deployed = sfn_harness.deploy(stack_template_of(aws_hop_templates, "test-steps"), "relaytrain-test-steps")
    executions = sfn_harness.run(deployed.state_machine_arn, {"run": "test-steps"})
    # legs of 2 steps, 2 legs per execution: 6 steps = legs 1-2, hop, leg 3 -> done
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    assert "HandedOver" in states_entered(executions[0]) and "RunDone" in states_entered(executions[1])
    assert json.loads(executions[1]["input"])["legs"] == 2
    assert [i["event"]["max_steps"] for i in sfn_harness.invocations] == [2, 2, 2]
    final = baton(deployed.store)
    assert final["done"] and final["weights_sha256"] == local_relay["weights_sha256"]


def test_budget_stops_the_run(sfn_harness, aws_hop_templates):
    # legs of 2 steps: the run is not done after the first leg, whose cost already exceeds the budget
    deployed = sfn_harness.deploy(stack_template_of(aws_hop_templates, "test-budget"), "relaytrain-test-budget")
    executions = sfn_harness.run(deployed.state_machine_arn, {"run": "budgeted"})
    assert [e["status"] for e in executions] == ["FAILED"]
    assert states_entered(executions[0])[-1] == "BudgetExhausted"
    failed = next(e for e in executions[0]["history"] if e["type"] == "ExecutionFailed")
    assert failed["executionFailedEventDetails"]["error"] == "BudgetExhausted"
    assert len(sfn_harness.invocations) == 1  # no second leg after the budget is reached
    state = baton(f"s3://{deployed.bucket}/runs/budgeted")
    assert state["cost_usd"] > 0 and not state["done"] and state["step"] == 2


def test_hybrid_pipeline_preprocesses_waits_for_the_node_and_evaluates(sfn_harness, aws_templates, aws_blueprints):
    """The test plays the GPU node: it trains the run when the pipeline hands over its task token
    (as the node's boot script does), then answers the token."""
    import time

    import boto3

    deployed = sfn_harness.deploy(stack_template_of(aws_templates, "test-hybrid"), "relaytrain-test-hybrid")
    s3 = boto3.client("s3", region_name="us-east-1")
    text = (pathlib.Path(json.__file__).read_text() * 3).encode()
    for i in range(3):
        s3.put_object(Bucket=deployed.bucket, Key=f"raw/part-{i}.txt", Body=text[i * 20000:(i + 1) * 20000])
    started = sfn_harness.start(deployed.state_machine_arn, {"run": "test-hybrid"})

    token_key = "runs/test-hybrid/control/gpu-node-task.json"
    end = time.monotonic() + 300
    while True:
        try:
            task = json.loads(s3.get_object(Bucket=deployed.bucket, Key=token_key)["Body"].read())
            break
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() < end, "the pipeline never handed over its task token"
            time.sleep(0.5)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    nodes = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(nodes) == 1 and {"Key": "relaytrain:store", "Value": deployed.store} in nodes[0]["Tags"]
    spec = aws_blueprints["test-hybrid"].training.run_spec().to_dict()
    code = (
        "import json, sys; from relaytrain_runtime.leg import run_leg; "
        "run_leg(sys.argv[1], spec=json.loads(sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", code, deployed.store, json.dumps(spec)], check=True, capture_output=True)
    with moto_config(sfn_harness.endpoint, {"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("stepfunctions", region_name="us-east-1").send_task_success(
            taskToken=task["token"], output=json.dumps({"store": deployed.store, "done": True}))

    (execution,) = sfn_harness.wait(deployed.state_machine_arn, started, timeout_s=240)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    entered = states_entered(execution)
    assert (
        entered.index("WriteManifest")
        < entered.index("StartGpuNodes")
        < entered.index("StopGpuNodes")
        < entered.index("Evaluate")
    )
    ops = [(i["event"].get("op"), i["event"].get("phase")) for i in sfn_harness.invocations]
    assert ops.count(("preprocess", "shard")) == 3 and ("preprocess", "manifest") in ops and ("evaluate", None) in ops
    assert all(i["ok"] and "error" not in i["result"] for i in sfn_harness.invocations)
    listed = s3.list_objects_v2(Bucket=deployed.bucket)["Contents"]
    keys = {o["Key"] for o in listed}
    assert "data/test-hybrid/data/manifest.json" in keys and any(k.startswith("runs/test-hybrid/eval/") for k in keys)
    assert (
        ec2.describe_instances(InstanceIds=[nodes[0]["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "terminated"
    )
