"""GCP components, one at a time, through the program's mocked resource graph."""

import hashlib
import shutil
import subprocess
import zipfile

import pytest

BUCKET = "gcp:storage/bucket:Bucket"
FUNCTION = "gcp:cloudfunctionsv2/function:Function"
INSTANCE = "gcp:compute/instance:Instance"
ACCOUNT = "gcp:serviceaccount/account:Account"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
OBJECT = "gcp:storage/bucketObject:BucketObject"
WORKFLOW = "gcp:workflows/workflow:Workflow"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"


def of(graph, typ):
    return [r for r in graph if r.type == typ]


def one(graph, typ):
    found = of(graph, typ)
    assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
    return found[0]


@pytest.fixture(scope="module")
def shards(gcp_graph, gcp_blueprints):
    return gcp_graph(gcp_blueprints["gcp-tiny-shards"])


@pytest.fixture(scope="module")
def spot(gcp_graph, gcp_blueprints):
    return gcp_graph(gcp_blueprints["gcp-gpu-spot"])


@pytest.fixture(scope="module")
def multinode(gcp_graph, gcp_blueprints):
    return gcp_graph(gcp_blueprints["gcp-gpu-multinode"])


def test_dataset_bucket_secure_defaults(shards, spot):
    b = one(shards, BUCKET).inputs
    assert b["uniformBucketLevelAccess"] is True and b["publicAccessPrevention"] == "enforced"
    assert b["versioning"] == {"enabled": True} and b["forceDestroy"] is False
    assert b["softDeletePolicy"] == {"retentionDurationSeconds": 0}  # versioning is the recovery window
    rules = [(r["condition"], r["action"]["type"]) for r in b["lifecycleRules"]]
    exchange = ["runs/gcp-tiny-shards/rounds/"]  # where the run's store keeps round exchange objects
    assert rules == [
        ({"daysSinceNoncurrentTime": 7, "withState": "ARCHIVED"}, "Delete"),  # pruned checkpoints
        ({"daysSinceNoncurrentTime": 1, "matchesPrefixes": exchange, "withState": "ARCHIVED"}, "Delete"),
        ({"age": 2, "matchesPrefixes": exchange}, "Delete"),  # leftovers of a crashed round
    ]
    assert b["labels"] == {"relaytrain-blueprint": "gcp-tiny-shards", "relaytrain-component": "dataset",
                           "relaytrain-topology": "function-shards", "team": "research"}
    assert len(one(spot, BUCKET).inputs["lifecycleRules"]) == 1  # no exchange on a GPU node


def test_existing_bucket_is_used_not_created(multinode):
    assert of(multinode, BUCKET) == []
    assert {r.inputs["bucket"] for r in of(multinode, BUCKET_IAM)} == {"my-existing-training-bucket"}
    meta = of(multinode, INSTANCE)[0].inputs["metadata"]
    assert meta["relaytrain-store"] == "gs://my-existing-training-bucket/runs/gcp-gpu-multinode"


def test_function_sized_from_blueprint_internal_and_dedicated(shards, gcp_blueprints):
    fs = gcp_blueprints["gcp-tiny-shards"].functions
    fn = one(shards, FUNCTION).inputs
    svc = fn["serviceConfig"]
    assert (svc["availableMemory"], svc["availableCpu"], svc["timeoutSeconds"]) == ("2Gi", "1", fs.timeout_s)
    assert svc["maxInstanceCount"] == fs.shards and svc["minInstanceCount"] == 0
    assert svc["ingressSettings"] == "ALLOW_INTERNAL_ONLY"
    assert fn["buildConfig"]["entryPoint"] == "relaytrain_http" and fn["buildConfig"]["runtime"] == "python311"
    sa = [a for a in of(shards, ACCOUNT) if a.name == "gcp-tiny-shards-shards-sa"]
    assert (
        len(sa) == 1
        and svc["serviceAccountEmail"] == f"{sa[0].inputs['accountId']}@relaytrain-review.iam.gserviceaccount.com"
    )
    # the function's account has object access on the run's bucket, and nothing else
    grants = [g.inputs for g in of(shards, BUCKET_IAM) if g.inputs["member"].endswith(svc["serviceAccountEmail"])]
    assert grants == [{"bucket": one(shards, BUCKET).inputs.get("name", "gcp-tiny-shards-data-bucket-0000000"),
                       "member": f"serviceAccount:{svc['serviceAccountEmail']}", "role": "roles/storage.objectAdmin"}]


def test_handler_answers_before_the_workflow_call_times_out(gcp_graph, gcp_blueprints):
    graph = gcp_graph(gcp_blueprints["gcp-diloco-shards"])
    svc = one(graph, FUNCTION).inputs["serviceConfig"]
    assert svc["timeoutSeconds"] == 3600 and svc["availableMemory"] == "32Gi" and svc["maxInstanceCount"] == 10
    handler = int(svc["environmentVariables"]["RELAYTRAIN_TIMEOUT_S"])
    import yaml

    wf = yaml.safe_load(one(graph, WORKFLOW).inputs["sourceContents"])
    (run_shards,) = [s["run_shards"] for s in wf["main"]["steps"] if "run_shards" in s]
    call = run_shards["parallel"]["for"]["steps"][0]["call_shard"]["try"]["args"]
    assert handler < call["timeout"] <= 1800  # Workflows caps an HTTP call at 1,800 s


def test_source_object_named_by_content_hash(shards, gcp_source):
    obj = one(shards, OBJECT).inputs
    assert obj["source"] == {"asset": gcp_source.path.name, "sha256": gcp_source.sha256}
    assert obj["name"] == f"source/relaytrain-{gcp_source.sha256[:16]}.zip"
    assert hashlib.sha256(gcp_source.path.read_bytes()).hexdigest() == gcp_source.sha256
    storage = one(shards, FUNCTION).inputs["buildConfig"]["source"]["storageSource"]
    assert storage == {"bucket": obj["bucket"], "object": obj["name"]}


def test_source_archive_deterministic_and_content_addressed(tmp_path):
    import relaytrain_runtime
    from relaytrain.gcp.source import build_source_archive

    pkg = tmp_path / "relaytrain_runtime"
    shutil.copytree(pathlib_of(relaytrain_runtime), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    first = build_source_archive(tmp_path / "a", package_dir=pkg)
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"x")  # never shipped, never changes the hash
    again = build_source_archive(tmp_path / "b", package_dir=pkg)
    assert again.sha256 == first.sha256 and again.path.read_bytes() == first.path.read_bytes()
    (pkg / "spec.py").write_text((pkg / "spec.py").read_text() + "\n# changed\n")
    changed = build_source_archive(tmp_path / "c", package_dir=pkg)
    assert changed.sha256 != first.sha256 and changed.object_name != first.object_name
    with zipfile.ZipFile(first.path) as zf:
        names = zf.namelist()
        assert "main.py" in names and "relaytrain_runtime/__init__.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "from relaytrain_runtime.handlers.gcf import relaytrain_http" in zf.read("main.py").decode()
        reqs = zf.read("requirements.txt").decode().splitlines()
        assert "torch==2.13.0+cpu" in reqs and "functions-framework==3.10.2" in reqs
        node = zf.read("requirements-node.txt").decode().splitlines()
        assert "torch==2.13.0" in node and "functions-framework==3.10.2" not in node  # CUDA wheel, no server


def pathlib_of(module):
    import pathlib

    return pathlib.Path(module.__file__).resolve().parent


def test_only_the_orchestrator_may_invoke(shards):
    invokers = of(shards, INVOKER)
    wf = one(shards, WORKFLOW).inputs
    assert [i.inputs for i in invokers] == [{
        "location": "us-central1", "member": f"serviceAccount:{wf['serviceAccount']}",
        "name": one(shards, FUNCTION).inputs["name"], "role": "roles/run.invoker"}]
    orchestrator = [a for a in of(shards, ACCOUNT) if a.parent_type == "relaytrain:gcp:Orchestration"]
    assert len(orchestrator) == 1 and wf["serviceAccount"].startswith(orchestrator[0].inputs["accountId"] + "@")
    # the orchestrator has no bucket access: it only calls the function
    assert not [g for g in of(shards, BUCKET_IAM) if wf["serviceAccount"] in g.inputs["member"]]


def test_workflow_targets_the_deployed_function_and_store(shards):
    import yaml

    wf = yaml.safe_load(one(shards, WORKFLOW).inputs["sourceContents"])
    text = one(shards, WORKFLOW).inputs["sourceContents"]
    assert "None" not in text and "&id" not in text  # every computed output resolved, no YAML anchors
    (run_shards,) = [s["run_shards"] for s in wf["main"]["steps"] if "run_shards" in s]
    call = run_shards["parallel"]["for"]["steps"][0]["call_shard"]["try"]
    assert call["args"]["url"] == "https://gcp-tiny-shards-shards-mock.a.run.app"
    assert call["args"]["auth"] == {"type": "OIDC"}
    assert (
        "gs://gcp-tiny-shards-data-bucket-0000000/runs/gcp-tiny-shards"
        in wf["main"]["steps"][0]["init"]["assign"][0]["store"]
    )


def test_gpu_node_spot_terminate_shielded_private(spot):
    (node,) = of(spot, INSTANCE)
    i = node.inputs
    assert i["machineType"] == "g2-standard-8" and i["zone"] == "us-central1-b"
    assert i["guestAccelerators"] == [{"count": 1, "type": "nvidia-l4"}]
    assert i["scheduling"] == {"automaticRestart": False, "instanceTerminationAction": "STOP",
                               "onHostMaintenance": "TERMINATE", "preemptible": True, "provisioningModel": "SPOT"}
    assert i["shieldedInstanceConfig"]["enableVtpm"] and i["shieldedInstanceConfig"]["enableIntegrityMonitoring"]
    assert i["networkInterfaces"][0]["accessConfigs"] == []  # no external IP by default
    assert i["bootDisk"]["initializeParams"]["image"].startswith("projects/deeplearning-platform-release/")
    assert i["metadata"]["enable-oslogin"] == "TRUE" and i["metadata"]["block-project-ssh-keys"] == "TRUE"
    assert i["labels"]["cost-center"] == "ml-42" and i["labels"]["relaytrain-component"] == "gpu-node"
    script = i["metadataStartupScript"]
    assert "-m relaytrain_runtime node --store \"$STORE\" --checkpoint-every 600 --poweroff-when-done" in script
    assert "requirements-node.txt" in script
    # rank 0 writes the blueprint's run spec before training (idempotent for an identical spec)
    assert (
        '[ "$RANK" != 0 ] || $VENV/bin/python -m relaytrain_runtime init --store "$STORE" --preset tiny-gpt' in script
    )
    assert script.index("relaytrain_runtime init") < script.index("relaytrain_runtime node")
    assert (
        i["metadata"]["relaytrain-source"]
        == f"gs://gcp-gpu-spot-data-bucket-0000000/{one(spot, OBJECT).inputs['name']}"
    )
    sa = one(spot, ACCOUNT).inputs["accountId"]
    assert i["serviceAccount"]["email"].startswith(sa + "@")
    assert [g.inputs["member"] for g in of(spot, BUCKET_IAM)] == [f"serviceAccount:{i['serviceAccount']['email']}"]


def test_gpu_network_private_access_and_nat(spot):
    subnet = one(spot, "gcp:compute/subnetwork:Subnetwork").inputs
    assert subnet["privateIpGoogleAccess"] is True
    assert one(spot, "gcp:compute/network:Network").inputs["autoCreateSubnetworks"] is False
    one(spot, "gcp:compute/routerNat:RouterNat")
    fws = {f.name: f.inputs for f in of(spot, "gcp:compute/firewall:Firewall")}
    assert fws["gcp-gpu-spot-net-iap-ssh"]["sourceRanges"] == ["35.235.240.0/20"]
    assert not [f for f in fws.values() if "0.0.0.0/0" in f.get("sourceRanges", [])]


def test_multinode_ranks_master_and_external_ip(multinode):
    nodes = sorted(of(multinode, INSTANCE), key=lambda r: r.name)
    assert [n.inputs["metadata"]["relaytrain-node-rank"] for n in nodes] == ["0", "1"]
    assert nodes[1].inputs["metadata"]["relaytrain-master"] == "10.20.0.10"  # rank 0's internal IP
    assert all(n.inputs["networkInterfaces"][0]["accessConfigs"] == [{}] for n in nodes)
    assert all(n.inputs["scheduling"]["onHostMaintenance"] == "TERMINATE" and
               n.inputs["scheduling"]["provisioningModel"] == "STANDARD" for n in nodes)
    assert "torchrun --nnodes 2" in nodes[0].inputs["metadataStartupScript"]
    # a2-highgpu-1g comes with one A100: stated explicitly so reviews and policies see the GPU
    assert nodes[0].inputs["guestAccelerators"] == [{"count": 1, "type": "nvidia-tesla-a100"}]


def test_every_resource_is_parented_to_a_component(gcp_graph, gcp_blueprints):
    for bp in gcp_blueprints.values():
        for r in gcp_graph(bp):
            if r.type.startswith("relaytrain:gcp:"):
                assert r.parent_type == "pulumi:pulumi:Stack", r.name
            else:
                assert r.parent_type.startswith("relaytrain:gcp:"), f"{bp.name}: {r.type} {r.name} has no component"


def test_service_account_ids_valid_and_distinct():
    import re

    from relaytrain.gcp.components import service_account_id

    ids = {service_account_id(n, role) for n in ("a", "x" * 80, "Big_Name.with.dots", "x" * 79 + "y")
           for role in ("fn", "wf", "node")}
    assert len(ids) == 12
    assert all(re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", i) for i in ids), ids


def test_function_built_by_its_own_account_into_its_own_repository(shards):
    fn = one(shards, FUNCTION).inputs["buildConfig"]
    build_sa = next(a for a in of(shards, ACCOUNT) if a.name.endswith("-build-sa"))
    email = f"{build_sa.inputs['accountId']}@relaytrain-review.iam.gserviceaccount.com"
    assert fn["serviceAccount"] == f"projects/relaytrain-review/serviceAccounts/{email}"
    repo = one(shards, "gcp:artifactregistry/repository:Repository").inputs
    assert (
        fn["dockerRepository"]
        == f"projects/relaytrain-review/locations/us-central1/repositories/{repo['repositoryId']}"
    )
    assert repo["cleanupPolicies"][0]["mostRecentVersions"]["keepCount"] == 3
    grants = sorted((r.type.split(":")[-1], r.inputs["role"]) for r in shards
                    if r.inputs.get("member") == f"serviceAccount:{email}")
    assert grants == [("BucketIAMMember", "roles/storage.objectViewer"), ("IAMMember", "roles/logging.logWriter"),
                      ("RepositoryIamMember", "roles/artifactregistry.writer")]


def test_startup_script_uses_every_gpu():
    from relaytrain.gcp.components import startup_script

    one = startup_script(checkpoint_every_s=60, nodes=1, gpus_per_node=1)
    assert "torchrun" not in one and "$VENV/bin/python -m relaytrain_runtime node" in one
    four = startup_script(checkpoint_every_s=60, nodes=1, gpus_per_node=4)
    assert "torchrun --standalone --nproc-per-node gpu -m relaytrain_runtime node" in four
    multi = startup_script(checkpoint_every_s=60, nodes=3, gpus_per_node=2)
    assert "torchrun --nnodes 3 --nproc-per-node gpu --node-rank \"$RANK\" --master-addr \"$MASTER\"" in multi
    for script in (one, four, multi, startup_script(checkpoint_every_s=60, nodes=2, init_args=["--preset", "a b"])):
        assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
        check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_cost_budget_only_with_a_billing_account(gcp_blueprints, gcp_source, spot):
    from relaytrain.gcp.mocks import run_program
    from relaytrain.gcp.program import GcpConfig, build

    assert not of(spot, "gcp:billing/budget:Budget")  # no billing account configured: no budget
    bp = gcp_blueprints["gcp-gpu-spot"]
    graph = run_program(lambda: build(bp, GcpConfig(project="p", source=gcp_source,
                                                    billing_account="000000-AAAAAA-111111")) and None)
    budget = one(graph, "gcp:billing/budget:Budget")
    assert budget.parent_type == "relaytrain:gcp:CostBudget"
    b = budget.inputs
    assert b["billingAccount"] == "000000-AAAAAA-111111"
    assert b["amount"]["specifiedAmount"] == {"currencyCode": "USD", "units": "20", "nanos": 0}
    assert b["budgetFilter"]["labels"] == {"relaytrain-blueprint": "gcp-gpu-spot"}
    assert [(r["thresholdPercent"], r.get("spendBasis", "CURRENT_SPEND")) for r in b["thresholdRules"]] == [
        (0.5, "CURRENT_SPEND"), (0.9, "CURRENT_SPEND"), (1, "CURRENT_SPEND"), (1, "FORECASTED_SPEND")]
