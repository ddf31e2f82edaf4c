"""A deployed AWS stack: find it, start a run, read the run's baton. No CDK, no torch (boto3 + JSON)."""

from __future__ import annotations

import json
import time

from relaytrain.aws.names import stack_name
from relaytrain.blueprint.schema import Blueprint
from relaytrain.worker import run_store as store_of_run
from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import COMMIT_PREFIX, LEGS_PREFIX, SPEC_KEY, commit_key, gen_of_commit_key
from relaytrain_runtime.store import NotFound, open_store


class DeployError(RelayError):
    """The deployed stack cannot be found or used."""


def _client(service: str, region: str):
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client(service, region_name=region)
    except NoRegionError:  # pragma: no cover - region is always given
        raise DeployError(f"no AWS region for {service}") from None


def _call(what: str, fn, **kwargs):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise DeployError(f"{what}: {err.get('Code', 'error')}: {err.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise DeployError(f"{what}: {exc}") from None


def region_of(blueprint: Blueprint, region: str | None = None) -> str:
    """The region to look in: the one asked for, else the (resolved) blueprint's."""
    return region or blueprint.region


def stack_outputs(blueprint: Blueprint, region: str | None = None) -> dict[str, str]:
    """The outputs of the blueprint's stack (BucketName, StoreUrl, StateMachineArn when it has one)."""
    name, where = stack_name(blueprint), region_of(blueprint, region)
    from botocore.exceptions import ClientError

    cfn = _client("cloudformation", where)
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise DeployError(f"stack {name} is not deployed in {where}: "
                              "run `cdk deploy -c blueprint=FILE` first") from None
        raise DeployError(f"describe stack {name}: {exc}") from None
    except Exception as exc:  # credentials, endpoint
        raise DeployError(f"describe stack {name} in {where}: {exc}") from None
    stack = stacks[0]
    if not stack["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stack["StackStatus"]:
        raise DeployError(f"stack {name} is {stack['StackStatus']}, not ready")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def run_store(outputs: dict[str, str], run: str) -> str:
    return store_of_run(f"s3://{outputs['BucketName']}", run)


def start_run(blueprint: Blueprint, run: str | None = None, region: str | None = None) -> dict:
    """Start an execution of the stack's state machine for run `run` (default: the blueprint's name)."""
    outputs = stack_outputs(blueprint, region)
    arn = outputs.get("StateMachineArn")
    if not arn:
        raise DeployError(f"blueprint {blueprint.name!r} ({blueprint.topology}) has no state machine: "
                          "its GPU nodes start training when the stack is deployed (see `relaytrain status`)")
    run = run or blueprint.name
    name = f"{run}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"[:72]  # room for hop names (NAME-LEGS <= 80)
    sfn = _client("stepfunctions", region_of(blueprint, region))
    started = _call(f"start execution of {arn}", sfn.start_execution, stateMachineArn=arn, name=name,
                    input=json.dumps({"run": run}))
    return {"execution": started["executionArn"], "store": run_store(outputs, run), "run": run}


def run_state(store_url: str) -> dict:
    """The run's progress from its baton: the newest commit manifest, the leg count and spec."""
    store = open_store(store_url)
    try:
        spec = json.loads(store.read(SPEC_KEY))
    except NotFound:
        raise DeployError(f"no run at {store_url} yet (no {SPEC_KEY}): start one with `relaytrain launch`") from None
    gens = sorted(g for g in map(gen_of_commit_key, store.list(COMMIT_PREFIX)) if g is not None)
    commit = json.loads(store.read(commit_key(gens[-1]))) if gens else {}
    legs = [k for k in store.list(LEGS_PREFIX) if k.endswith(".json")]
    checkpoint = None
    if commit:
        weights = commit.get("objects", {}).get("weights", {})
        checkpoint = {"gen": commit["gen"], "manifest": commit_key(commit["gen"]), "weights": weights.get("key"),
                      "weights_sha256": commit.get("weights_sha256")}
    return {
        "store": store_url, "preset": spec.get("preset"), "steps": spec.get("steps"),
        "step": commit.get("step", 0), "done": bool(commit.get("done", False)), "loss": commit.get("loss"),
        "tokens": commit.get("tokens", 0), "cost_usd": commit.get("cost_usd", 0.0), "legs": len(legs),
        "checkpoints": len(gens), "latest_checkpoint": checkpoint,
    }


def executions(blueprint: Blueprint, outputs: dict[str, str], region: str | None = None, limit: int = 5) -> list[dict]:
    arn = outputs.get("StateMachineArn")
    if not arn:
        return []
    sfn = _client("stepfunctions", region_of(blueprint, region))
    listed = _call(f"list executions of {arn}", sfn.list_executions, stateMachineArn=arn,
                   maxResults=limit)["executions"]
    return [{"name": e["name"], "status": e["status"], "started": e["startDate"].isoformat()} for e in listed]
