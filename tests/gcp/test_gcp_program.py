"""The GCP program over every GCP blueprint: snapshots, policy gates, review plans, errors."""

import json
import re
import subprocess
import sys
import types

import pytest

from tests.fixtures.pulumi import gcp_blueprint_files

BLUEPRINT_NAMES = [p.stem for p in gcp_blueprint_files()]
_HASH = re.compile(r"\b[0-9a-f]{64}\b|(?<=relaytrain-)[0-9a-f]{16}(?=\.zip)")


def snapshot_view(graph) -> list[dict]:
    """The graph as the snapshot stores it: the runtime archive's hash masked, so merging runtime
    code does not churn every snapshot (test_gcp_components checks the hash itself)."""
    return json.loads(_HASH.sub("<hash>", json.dumps([r.to_json() for r in graph], sort_keys=True)))


@pytest.mark.parametrize("name", BLUEPRINT_NAMES)
def test_resource_graph_snapshot(name, gcp_graph, gcp_blueprints, snapshot):
    assert snapshot_view(gcp_graph(gcp_blueprints[name])) == snapshot


@pytest.mark.parametrize("name", BLUEPRINT_NAMES)
def test_policy_gates(name, gcp_graph, gcp_blueprints):
    from relaytrain.gcp.policy import violations

    graph = gcp_graph(gcp_blueprints[name])
    assert len(graph) > 5
    assert violations(graph) == []


def test_build_is_repeatable_in_one_process(gcp_blueprints, gcp_source):
    from relaytrain.gcp.mocks import run_program
    from relaytrain.gcp.program import GcpConfig, build

    bp = gcp_blueprints["gcp-tiny-shards"]
    runs = [run_program(lambda: build(bp, GcpConfig(project="p", source=gcp_source)) and None) for _ in range(2)]
    assert [r.to_json() for r in runs[0]] == [r.to_json() for r in runs[1]]
    assert len({(r.type, r.name) for r in runs[0]}) == len(runs[0])  # mocks do not catch duplicate names


def _resource(typ, name, **inputs):
    return types.SimpleNamespace(type=typ, name=name, inputs=inputs)


BAD = [
    (
        _resource(
            "gcp:storage/bucketIAMMember:BucketIAMMember",
            "pub",
            bucket="b",
            role="roles/storage.objectViewer",
            member="allUsers",
        ),
        "relaytrain-no-public-members: pub: grants access to allUsers",
    ),
    (
        _resource("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "pub2", member="allAuthenticatedUsers"),
        "relaytrain-no-public-members: pub2: grants access to allAuthenticatedUsers",
    ),
    (
        _resource("gcp:storage/bucket:Bucket", "b", uniformBucketLevelAccess=True, publicAccessPrevention="inherited"),
        "relaytrain-bucket-locked-down: b: publicAccessPrevention must be 'enforced'",
    ),
    (
        _resource("gcp:storage/bucket:Bucket", "b2", publicAccessPrevention="enforced"),
        "relaytrain-bucket-locked-down: b2: uniformBucketLevelAccess must be true",
    ),
    (
        _resource(
            "gcp:compute/instance:Instance", "vm", serviceAccount={"email": "123-compute@developer.gserviceaccount.com"}
        ),
        "relaytrain-no-default-compute-sa: vm: "
        "runs as the default compute service account 123-compute@developer.gserviceaccount.com",
    ),
    (
        _resource("gcp:compute/instance:Instance", "vm2"),
        "relaytrain-no-default-compute-sa: vm2: "
        "no service account set, so it runs as the default compute service account",
    ),
    (
        _resource(
            "gcp:compute/instance:Instance",
            "gpu",
            serviceAccount={"email": "n@p.iam.gserviceaccount.com"},
            guestAccelerators=[{"type": "nvidia-l4", "count": 1}],
            scheduling={"onHostMaintenance": "MIGRATE"},
            labels={"relaytrain-blueprint": "x", "relaytrain-component": "gpu-node"},
        ),
        "relaytrain-gpu-instance: gpu: GPU instances need scheduling.onHostMaintenance 'TERMINATE'",
    ),
    (
        _resource(
            "gcp:compute/instance:Instance",
            "gpu2",
            serviceAccount={"email": "n@p.iam.gserviceaccount.com"},
            guestAccelerators=[{"type": "nvidia-l4", "count": 1}],
            scheduling={"onHostMaintenance": "TERMINATE"},
        ),
        "relaytrain-gpu-instance: gpu2: missing cost labels relaytrain-blueprint, relaytrain-component",
    ),
    (
        _resource(
            "gcp:compute/instance:Instance",
            "g2",
            machineType="zones/us-central1-a/machineTypes/g2-standard-8",
            serviceAccount={"email": "n@p.iam.gserviceaccount.com"},
            labels={"relaytrain-blueprint": "x", "relaytrain-component": "gpu-node"},
        ),
        "relaytrain-gpu-instance: g2: GPU instances need scheduling.onHostMaintenance 'TERMINATE'",
    ),
    (
        _resource(
            "gcp:cloudfunctionsv2/function:Function",
            "fn",
            buildConfig={"serviceAccount": "projects/p/serviceAccounts/b@p.iam.gserviceaccount.com"},
            serviceConfig={"serviceAccountEmail": "f@p.iam.gserviceaccount.com", "ingressSettings": "ALLOW_ALL"},
        ),
        "relaytrain-function-internal-ingress: fn: ingressSettings must be ALLOW_INTERNAL_ONLY, got 'ALLOW_ALL'",
    ),
    (
        _resource(
            "gcp:cloudfunctionsv2/function:Function", "fn2", serviceConfig={"ingressSettings": "ALLOW_INTERNAL_ONLY"}
        ),
        "relaytrain-no-default-compute-sa: fn2: "
        "serviceConfig.serviceAccountEmail not set (the default compute service account)",
    ),
    (
        _resource(
            "gcp:cloudfunctionsv2/function:Function",
            "fn3",
            serviceConfig={
                "ingressSettings": "ALLOW_INTERNAL_ONLY",
                "serviceAccountEmail": "f@p.iam.gserviceaccount.com",
            },
        ),
        "relaytrain-no-default-compute-sa: fn3: "
        "buildConfig.serviceAccount not set (builds run as the default compute service account)",
    ),
    (
        _resource(
            "gcp:cloudfunctionsv2/function:Function",
            "fn4",
            serviceConfig={
                "ingressSettings": "ALLOW_INTERNAL_ONLY",
                "serviceAccountEmail": "f@p.iam.gserviceaccount.com",
            },
            buildConfig={"serviceAccount": "projects/p/serviceAccounts/1-compute@developer.gserviceaccount.com"},
        ),
        "relaytrain-no-default-compute-sa: fn4: "
        "runs as the default compute service account 1-compute@developer.gserviceaccount.com",
    ),
    (
        _resource("gcp:workflows/workflow:Workflow", "wf"),
        "relaytrain-no-default-compute-sa: wf: "
        "no service account set, so it runs as the default compute service account",
    ),
]


@pytest.mark.parametrize("resource,message", BAD, ids=[r.name for r, _ in BAD])
def test_policy_rules_catch_violations(resource, message):
    from relaytrain.gcp.policy import violations

    assert violations([resource]) == [message]


def test_policy_pack_reports_through_pulumi_policy():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "stacks" / "policy"))
    try:
        from relaytrain_policies import policies
    finally:
        sys.path.pop(0)
    pack = {p.name: p for p in policies()}
    assert set(pack) == {"relaytrain-no-public-members", "relaytrain-bucket-locked-down",
                         "relaytrain-no-default-compute-sa", "relaytrain-gpu-instance",
                         "relaytrain-function-internal-ingress"}
    reported = []
    args = types.SimpleNamespace(resource_type="gcp:storage/bucket:Bucket", name="open", urn="urn:x",
                                 props={"uniformBucketLevelAccess": False, "publicAccessPrevention": "enforced"})
    pack["relaytrain-bucket-locked-down"].validate(args, lambda msg, urn=None: reported.append((msg, urn)))
    assert reported == [("open: uniformBucketLevelAccess must be true", "urn:x")]
    reported.clear()
    args.props = {"uniformBucketLevelAccess": True, "publicAccessPrevention": "enforced"}
    pack["relaytrain-bucket-locked-down"].validate(args, lambda msg, urn=None: reported.append((msg, urn)))
    assert reported == []


def test_program_refuses_what_it_cannot_build(tmp_path):
    from relaytrain.blueprint.schema import Blueprint
    from relaytrain.gcp.program import GcpConfig, GcpProgramError, build, region_of
    from relaytrain_runtime import RelayError

    bp = Blueprint.model_validate({"name": "x", "cloud": "gcp", "region": "europe-west4", "topology": "gpu-node",
                                   "gpu": {}})
    with pytest.raises(GcpProgramError, match="region 'europe-west4' differs from stack config gcp:region 'us-east1'"):
        region_of(bp, GcpConfig(region="us-east1"))
    assert region_of(bp, GcpConfig(region="europe-west4")) == "europe-west4"
    assert issubclass(GcpProgramError, RelayError)
    with pytest.raises(GcpProgramError, match="cloud is 'aws'"):
        build(Blueprint.model_validate({"name": "a", "cloud": "aws", "topology": "gpu-node"}))
    with pytest.raises(GcpProgramError, match="topology 'lambda-steps' is not available on gcp"):
        build(Blueprint.model_validate({"name": "l", "cloud": "gcp", "topology": "lambda-steps"}))
    with pytest.raises(GcpProgramError, match=r"need the project id \(pulumi config set gcp:project PROJECT\)"):
        build(Blueprint.model_validate({"name": "f", "cloud": "gcp", "topology": "function-shards", "functions": {}}),
              GcpConfig(source=object()))
    with pytest.raises(GcpProgramError, match="needs a functions: section"):
        build(Blueprint.model_validate({"name": "f", "cloud": "gcp", "topology": "function-shards"}),
              GcpConfig(source=object()))


def test_write_plans_one_json_per_blueprint(tmp_path, gcp_blueprints):
    from relaytrain.gcp.review import write_plans

    bps = [gcp_blueprints["gcp-tiny-shards"], gcp_blueprints["gcp-gpu-spot"]]
    paths = write_plans(bps, tmp_path / "gcp")
    assert [p.name for p in paths] == ["gcp-tiny-shards.plan.json", "gcp-gpu-spot.plan.json"]
    plan = json.loads(paths[1].read_text())
    assert plan["blueprint"] == "gcp-gpu-spot" and plan["topology"] == "gpu-node"
    assert len(plan["policy"]["rules"]) == 5 and plan["policy"]["violations"] == []
    types_ = {r["type"] for r in plan["resources"]}
    assert {"gcp:compute/instance:Instance", "relaytrain:gcp:GpuTrainingNode"} <= types_
    assert "0x" not in paths[0].read_text()  # no memory addresses
    again = write_plans(bps, tmp_path / "again")
    assert [p.read_text() for p in again] == [p.read_text() for p in paths]


def test_light_imports_never_load_pulumi():
    code = ("import relaytrain.gcp, relaytrain.gcp.workflow, relaytrain.gcp.policy, relaytrain.gcp.source, "
            "relaytrain.gcp.localflow, sys, json; print(json.dumps(sorted(sys.modules)))")
    mods = {m.split(".")[0] for m in json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                                               capture_output=True, text=True).stdout)}
    assert not {"pulumi", "pulumi_gcp", "torch"} & mods


def test_synth_command_writes_gcp_plans(tmp_path):
    from tests.fixtures.pulumi import GCP_TEST_BLUEPRINTS

    out = tmp_path / "review"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "synth", str(GCP_TEST_BLUEPRINTS / "gcp-gpu-spot.yaml"),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "gcp" / "gcp-gpu-spot.plan.json").read_text())
    assert sum(r["type"] == "gcp:compute/instance:Instance" for r in plan["resources"]) == 1
    assert "synthesized 0 AWS and 1 GCP blueprint(s)" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: gcp-bad\ncloud: gcp\ntopology: function-shards\nfunctions:\n  shards: 0\n")
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "synth", str(bad), "--out", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "functions.shards" in proc.stderr and not (tmp_path / "none").exists()


@pytest.mark.parametrize("name", ["tiny-gpt-gce-gpu", "gcp-gpu-spot"])
def test_node_init_args_give_back_the_blueprint_spec(name, gcp_blueprints):
    """The spec the node writes at boot is exactly the blueprint's (parsed by the real init options)."""
    import argparse

    from relaytrain.gcp.program import spec_args
    from relaytrain_runtime.verbs._common import add_spec_arguments, spec_from_args

    bp = gcp_blueprints[name]
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    assert spec_from_args(parser.parse_args(spec_args(bp))) == bp.training.run_spec()


def test_pulumi_entry_point_reads_stack_config(gcp_graph, gcp_blueprints):
    """What `pulumi up` runs (Pulumi.yaml `main`), under the mocks with a stack's config."""
    import pathlib
    import runpy

    import pulumi

    from relaytrain.gcp.mocks import run_program

    root = pathlib.Path(__file__).resolve().parents[2]
    assert "main: relaytrain/gcp/" in (root / "stacks" / "Pulumi.yaml").read_text()
    pulumi.runtime.set_all_config({"relaytrain:blueprint": "tests/blueprints/gcp/gcp-gpu-spot.yaml",
                                   "gcp:project": "relaytrain-review", "gcp:region": "us-central1"})
    try:
        main = lambda: runpy.run_path(str(root / "stacks" / "relaytrain" / "gcp"), run_name="__main__") and None  # noqa: E731
        graph = run_program(main)
        pulumi.runtime.set_config("gcp:region", "europe-west4")
        with pytest.raises(Exception, match="region 'us-central1' differs from stack config gcp:region 'europe-west4'"):
            run_program(main)
    finally:
        pulumi.runtime.set_all_config({})
    ours = gcp_graph(gcp_blueprints["gcp-gpu-spot"])
    assert [(r.type, r.name) for r in graph] == [(r.type, r.name) for r in ours]
    instance = next(r for r in graph if r.type == "gcp:compute/instance:Instance")
    assert instance.inputs["zone"] == "us-central1-b"
