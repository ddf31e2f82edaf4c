"""The real CDK CLI (node_modules/.bin/cdk, pinned in package-lock.json) against moto's server on
127.0.0.1, as a platform team's CI would run it with a prebuilt image (`image_uri`).

One module-scoped deployment, reused by every test: `cdk synth` of every AWS blueprint of the
catalog plus the tiny test-steps one (each Lambda topology with `image_uri`: no Docker), `cdk
bootstrap`, one `cdk deploy --all` from that assembly. Then `relaytrain launch` / `relaytrain
status` run test-steps to done, its legs executed by the real handler under awslambdaric (moto's
Lambda invokes routed to it, tests/fixtures/cdk.py); `cdk diff` shows a blueprint change;
`cdk destroy` (of the stacks without a VPC, see below) leaves the retained bucket and the run's
checkpoints.

What moto cannot emulate, so this test does not prove it:
- running a container image: Lambda functions are executed by the real handler in a local
  awslambdaric process instead (the image URI is accepted, never pulled);
- EC2 instances booting their user data: the GPU stacks deploy (launch template, instances,
  roles), but no node trains, so the hybrid and gpu-node runs are not driven to done here
  (tests/aws/test_aws_orchestration.py drives the hybrid pipeline with a stand-in node);
- CDK's own custom-resource handlers (restricting the default security group): their requests
  are answered SUCCESS without running them;
- IAM evaluation: moto does not enforce the policies (cdk-nag, checkov and
  tests/aws/test_aws_security.py check them instead);
- deleting a stack with a VPC: moto deletes the VPC before its subnets and fails, so `cdk destroy`
  runs on the stacks without one (test-steps, tiny-gpt-lambda-steps);
- stack outputs of a change set: moto's executed change sets have none, so the deploy uses
  `--method direct` (CreateStack/UpdateStack; the CLI's default creates and executes a change set);
- Step Functions executing state machines created by CloudFormation: the harness re-creates each
  one, with the definition CloudFormation resolved and the same ARN, in moto's interpreter.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import time

import boto3
import pytest

from tests.conftest import ROOT
from tests.fixtures.cdk import (
    ACCOUNT,
    AWS_TEST_BLUEPRINTS,
    REGION,
    LambdaRoutes,
    SfnHarness,
    moto_cloudformation_fixed,
    moto_config,
    routed_lambda_invokes,
    sdk_tasks_normalised,
)

CDK = ROOT / "node_modules" / ".bin" / "cdk"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/relaytrain-runtime@sha256:" + "0" * 64
LAMBDA_TOPOLOGIES = ("lambda-steps", "hybrid")



def blueprint_files(out: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every AWS catalog blueprint plus test-steps, written to `out` with `image_uri` where it applies."""
    from relaytrain.blueprint import catalog_files, load

    sources = [p for p in catalog_files() if load(p).cloud == "aws"] + [AWS_TEST_BLUEPRINTS / "steps.yaml"]
    files = {}
    for source in sources:
        bp = load(source)
        text = source.read_text()
        if bp.topology in LAMBDA_TOPOLOGIES:
            text += f"\nimage_uri: {IMAGE}\n"
        files[bp.name] = out / source.name
        files[bp.name].write_text(text)
    return files


class Cli:
    """The CDK CLI and relaytrain as a user runs them: subprocesses with this checkout's venv on PATH."""

    def __init__(self, work: pathlib.Path):
        # the CLI runs in `work` with a copy of cdk.json: its context lookups (cdk.context.json) stay there
        self.cwd = work
        (work / "cdk.json").write_text((ROOT / "cdk.json").read_text())
        self.env = {
            **os.environ,
            "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "CDK_HOME": str(work / "cdk-home"),
        }
        self.seconds: dict[str, float] = {}

    def cdk(self, phase: str, *args: str) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = subprocess.run([str(CDK), *args, "--no-notices"], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=900)
        self.seconds[phase] = round(time.monotonic() - started, 1)
        assert done.returncode == 0, f"cdk {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def relaytrain(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "relaytrain", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=300)


def stack_physical(name: str) -> dict:
    cfn = boto3.client("cloudformation", region_name=REGION)
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
                for r in resources if "LogicalResourceId" in r}
    physical["__outputs__"] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    physical["__status__"] = stack["StackStatus"]
    return physical


@pytest.fixture(scope="module")
def deployment(moto_server, tmp_path_factory):
    import urllib.request

    from relaytrain.aws.names import stack_name
    from relaytrain.blueprint import load

    # `make test` runs `npm ci` before pytest: a missing CLI is a broken setup, not a reason to skip
    assert CDK.exists(), f"{CDK} is missing: `make setup` (or `make test`) installs the pinned CDK CLI (npm ci)"
    # a clean account: other modules' stacks and state machines have the same names
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    work = tmp_path_factory.mktemp("cdk-cli")
    files = blueprint_files(work)
    cli = Cli(work)
    assembly = work / "cdk.out"
    with contextlib.ExitStack() as stack:
        routes = stack.enter_context(routed_lambda_invokes(LambdaRoutes()))
        stack.enter_context(sdk_tasks_normalised())
        stack.enter_context(moto_cloudformation_fixed())
        cli.cdk("synth", "synth", "-c", "blueprint=" + ",".join(map(str, files.values())), "-o", str(assembly), "-q")
        cli.cdk("bootstrap", "bootstrap", f"aws://{ACCOUNT}/{REGION}", "--app", str(assembly))
        cli.cdk("deploy", "deploy", "--all", "--app", str(assembly), "--require-approval", "never",
                "--method", "direct", "--concurrency", "4", "--outputs-file", str(work / "outputs.json"))
        blueprints = {name: load(path) for name, path in files.items()}
        yield {
            "cli": cli, "files": files, "blueprints": blueprints, "assembly": assembly, "work": work,
            "harness": SfnHarness(moto_server, None, routes, stack),
            "stacks": {name: stack_name(bp) for name, bp in blueprints.items()},
        }
        print(f"\nCDK CLI phases (s): {json.dumps(cli.seconds)}")


def test_every_aws_blueprint_deploys_with_the_prebuilt_image(deployment):
    outputs = json.loads((deployment["work"] / "outputs.json").read_text())
    assert set(outputs) == set(deployment["stacks"].values())
    for name, stack in deployment["stacks"].items():
        physical = stack_physical(stack)
        assert physical["__status__"] == "CREATE_COMPLETE", name
        assert outputs[stack]["BucketName"] == physical["__outputs__"]["BucketName"]
        template = json.loads((deployment["assembly"] / f"{stack}.template.json").read_text())
        images = [r["Properties"]["Code"]["ImageUri"] for r in template["Resources"].values()
                  if r["Type"] == "AWS::Lambda::Function" and "ImageConfig" in r["Properties"]]
        if deployment["blueprints"][name].topology in LAMBDA_TOPOLOGIES:
            assert images and all("relaytrain-runtime@sha256:" in json.dumps(i) for i in images), name
    # no image asset anywhere: nothing for Docker to build or push
    manifests = [json.loads(p.read_text()) for p in deployment["assembly"].glob("*.assets.json")]
    assert manifests and all(not m.get("dockerImages") for m in manifests)


def test_launch_and_status_run_the_tiny_blueprint_to_done(deployment):
    cli, stack = deployment["cli"], deployment["stacks"]["test-steps"]
    template = json.loads((deployment["assembly"] / f"{stack}.template.json").read_text())
    machine = deployment["harness"].attach(template, stack_physical(stack))
    path = str(deployment["files"]["test-steps"])
    with moto_config(deployment["harness"].endpoint, {"stepfunctions": {"execute_state_machine": True}}):
        launched = cli.relaytrain("launch", path, "--run", "cli1", "--json")
        assert launched.returncode == 0, launched.stderr
        started = json.loads(launched.stdout)
        assert started["store"] == f"{machine.store.rsplit('/', 1)[0]}/cli1"
        deadline = time.monotonic() + 600
        while True:
            shown = cli.relaytrain("status", path, "--run", "cli1", "--json")
            state = json.loads(shown.stdout) if shown.returncode == 0 else {}
            if state.get("done") and all(e["status"] != "RUNNING" for e in state["executions"]):
                break
            assert time.monotonic() < deadline, f"run not done: {shown.stdout or shown.stderr}"
            time.sleep(2)
    assert state["step"] == state["steps"] == 6 and state["legs"] >= 1 and state["loss"] > 0
    assert [e["status"] for e in state["executions"]] == ["SUCCEEDED"]
    legs = [i for i in deployment["harness"].invocations if i["event"].get("op") == "leg"]
    assert legs and all(i["ok"] for i in legs)  # every leg ran in the real handler


def test_diff_shows_a_blueprint_change(deployment):
    path = deployment["files"]["test-steps"]
    changed = deployment["work"] / "steps-changed.yaml"
    text = path.read_text()
    assert "memory_mb: 2048" in text
    changed.write_text(text.replace("memory_mb: 2048", "memory_mb: 3008"))
    done = deployment["cli"].cdk("diff", "diff", deployment["stacks"]["test-steps"], "-c", f"blueprint={changed}",
                                 "-o", str(deployment["work"] / "cdk.out.diff"))
    report = done.stdout + done.stderr
    assert "AWS::Lambda::Function" in report and "MemorySize" in report
    assert "2048" in report and "3008" in report


def test_destroy_keeps_the_retained_bucket_and_checkpoints(deployment):
    stack = deployment["stacks"]["test-steps"]
    bucket = stack_physical(stack)["__outputs__"]["BucketName"]
    s3 = boto3.client("s3", region_name=REGION)
    before = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="runs/cli1/baton/").get("Contents", [])]
    assert before, "the run committed no checkpoint manifest"
    # the stacks without a VPC: moto deletes a VPC before its subnets and fails ("has dependencies")
    gone = [deployment["stacks"][n] for n, bp in deployment["blueprints"].items()
            if bp.topology == "lambda-steps" and not bp.cache.enabled]
    assert deployment["stacks"]["test-steps"] in gone
    deployment["cli"].cdk("destroy", "destroy", *gone, "--app", str(deployment["assembly"]), "--force")
    cfn = boto3.client("cloudformation", region_name=REGION)
    alive = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert not set(alive) & set(gone)
    after = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="runs/cli1/baton/").get("Contents", [])]
    assert after == before
