"""Reusable Pulumi components for relaytrain on Google Cloud.

Each component takes its props as arguments, creates its resources as children, exposes them as
attributes and registers its outputs. Secure by default: uniform bucket access with public
access prevention, dedicated service accounts scoped to one bucket, internal-only function
ingress, no external IP on nodes. No business logic: the program (`relaytrain.gcp.program`)
maps a blueprint onto these.

| component | role (same concept, same name as `relaytrain.aws.constructs`) |
|---|---|
| `DatasetBucket` | the run's bucket: dataset, checkpoints, batons, source archive |
| `FunctionShards` | the runtime's Cloud Functions handler as one 2nd-gen function, K instances |
| `Orchestration` | a Cloud Workflows workflow driving shard rounds; the only invoker |
| `TrainingNetwork` | a VPC with Private Google Access and Cloud NAT for nodes without external IPs |
| `GpuTrainingNode` | GCE GPU instance(s) running `relaytrain-runtime node` |
| `CostBudget` | a Cloud Billing budget over the run's labelled resources, alerting at 50/90/100 % |
| `RunMonitoring` | log-based metrics from the runtime's commit log lines, a dashboard, a cost alert |
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex

import pulumi
import pulumi_gcp as gcp

from relaytrain.gcp import workflow as wf
from relaytrain.gcp.source import ENTRY_POINT, PYTHON_RUNTIME, SourceArchive
from relaytrain_runtime.report.live import MLFLOW_URI_ENV
from relaytrain_runtime.report.logline import COMMIT_LOG_ENV
from relaytrain_runtime.report.logline import EVENT as COMMIT_EVENT

OBJECT_ADMIN = "roles/storage.objectAdmin"  # read/write/list/delete objects, nothing on the bucket itself
DLVM_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"
IAP_RANGE = "35.235.240.0/20"  # Identity-Aware Proxy TCP forwarding (SSH without an external IP)


def service_account_id(name: str, role: str) -> str:
    """A valid, stable account id (6-30 chars, [a-z][a-z0-9-]*[a-z0-9]) for NAME's ROLE."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "run"
    digest = hashlib.sha256(name.encode()).hexdigest()[:4]
    head = f"rt{digest}-{slug}"[: 30 - len(role) - 1].rstrip("-")
    return f"{head}-{role}"


def clean_labels(labels: dict[str, str]) -> dict[str, str]:
    """GCP label rules: lowercase keys starting with a letter, [a-z0-9_-], at most 63 chars."""
    out = {}
    for key, value in sorted(labels.items()):
        k = re.sub(r"[^a-z0-9_-]", "_", key.lower())[:63]
        if not k or not k[0].isalpha():
            k = ("l" + k)[:63]
        out[k] = re.sub(r"[^a-z0-9_-]", "_", str(value).lower())[:63]
    return out


def resource_name(name: str, limit: int = 63) -> str:
    """A GCP resource name from a logical name: lowercase letters, digits and hyphens."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower())[:limit].strip("-")


def _member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat("serviceAccount:", email)


def _worker_identity(name: str, role: str, display_name: str, bucket: pulumi.Input[str], source: SourceArchive,
                     opts: pulumi.ResourceOptions):
    """A worker's dedicated service account, its object access to the run's bucket alone, and the runtime
    source archive it installs (named by content hash)."""
    account = gcp.serviceaccount.Account(f"{name}-sa", account_id=service_account_id(name, role),
                                         display_name=display_name, opts=opts)
    access = gcp.storage.BucketIAMMember(f"{name}-bucket-access", bucket=bucket, role=OBJECT_ADMIN,
                                         member=_member(account.email), opts=opts)
    source_object = gcp.storage.BucketObject(f"{name}-source", bucket=bucket, name=source.object_name,
                                             source=pulumi.FileAsset(str(source.path)),
                                             content_type="application/zip", opts=opts)
    return account, access, source_object


class DatasetBucket(pulumi.ComponentResource):
    """The run's bucket: uniform access, public access prevention, versioning, lifecycle, labels.

    Checkpoints are pruned by the runtime (`keep_last`); versioning keeps overwritten or deleted
    objects recoverable for `noncurrent_days`, after which the lifecycle deletes them. Soft delete
    is off: versioning already gives that window, and soft delete would bill every pruned
    checkpoint for another week. Round exchange objects (`exchange_prefixes`, e.g.
    `runs/NAME/rounds/`) are swept by the runtime every round: their noncurrent versions go after
    one day, and live leftovers of a crashed round after `exchange_days`.
    """

    def __init__(self, name: str, *, location: str, labels: dict[str, str], noncurrent_days: int = 7,
                 exchange_prefixes: list[str] = (), exchange_days: int = 2, force_destroy: bool = False,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:DatasetBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def delete(**condition) -> gcp.storage.BucketLifecycleRuleArgs:
            return gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(**condition))

        rules = [delete(days_since_noncurrent_time=noncurrent_days, with_state="ARCHIVED")]
        if exchange_prefixes:
            rules += [
                delete(days_since_noncurrent_time=1, with_state="ARCHIVED", matches_prefixes=list(exchange_prefixes)),
                delete(age=exchange_days, matches_prefixes=list(exchange_prefixes)),
            ]
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            location=location.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(retention_duration_seconds=0),
            force_destroy=force_destroy,
            labels=clean_labels(labels),
            lifecycle_rules=rules,
            opts=child,
        )
        self.name = self.bucket.name
        self.url = pulumi.Output.concat("gs://", self.bucket.name)
        self.register_outputs({"name": self.name, "url": self.url})


class FunctionShards(pulumi.ComponentResource):
    """The runtime's HTTP handler as one Cloud Functions (2nd gen) function serving every shard.

    The source archive is uploaded as an object named by its content hash. The function runs as
    a dedicated service account with object access to `bucket` alone, accepts internal traffic
    only, and nobody may invoke it until a caller is granted (`Orchestration` grants itself).
    It is built by its own build service account (not the default compute account) that may read
    `bucket`, write the function's own Artifact Registry repository, and write logs.
    `handler_timeout_s` (RELAYTRAIN_TIMEOUT_S) is how long the handler may work before it answers,
    which must come before the caller's HTTP timeout; RELAYTRAIN_VCPU / RELAYTRAIN_MEMORY_GIB /
    RELAYTRAIN_BILLING let it price its own seconds into the run's accrued cost.
    """

    def __init__(self, name: str, *, project: str, bucket: pulumi.Input[str], source: SourceArchive, location: str,
                 memory_gib: float, vcpu: int, timeout_s: int, max_instances: int, handler_timeout_s: int,
                 labels: dict[str, str], environment: dict[str, str] | None = None, keep_images: int = 3,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:FunctionShards", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account, self.bucket_access, self.source_object = _worker_identity(
            name, "fn", f"relaytrain {name} function shards", bucket, source, child)

        self.build_account = gcp.serviceaccount.Account(
            f"{name}-build-sa", account_id=service_account_id(name, "build"),
            display_name=f"relaytrain {name} function build", opts=child)
        builder = _member(self.build_account.email)
        repo_id = resource_name(f"{name}-images")
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-images", repository_id=repo_id, location=location, format="DOCKER",
            description=f"relaytrain {name} function images", labels=clean_labels(labels),
            cleanup_policies=[gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                id="keep-recent", action="KEEP",
                most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                    keep_count=keep_images))],
            opts=child)
        build_grants = [
            gcp.storage.BucketIAMMember(f"{name}-build-source", bucket=bucket, role="roles/storage.objectViewer",
                                        member=builder, opts=child),
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-build-images", repository=self.repository.name, location=location,
                role="roles/artifactregistry.writer", member=builder, opts=child),
            gcp.projects.IAMMember(f"{name}-build-logs", project=project, role="roles/logging.logWriter",
                                   member=builder, opts=child),
        ]
        env = {"RELAYTRAIN_TIMEOUT_S": str(handler_timeout_s), "RELAYTRAIN_VCPU": str(vcpu),
               "RELAYTRAIN_MEMORY_GIB": f"{memory_gib:g}", "RELAYTRAIN_BILLING": "request",
               COMMIT_LOG_ENV: "1", **(environment or {})}  # one JSON log line per commit (RunMonitoring's metrics)
        memory = f"{memory_gib:g}Gi" if memory_gib >= 1 else f"{int(memory_gib * 1024)}Mi"
        self.function = gcp.cloudfunctionsv2.Function(
            f"{name}-function",
            name=resource_name(name),
            location=location,
            description=f"relaytrain {name}: shard/reduce handler ({ENTRY_POINT})",
            labels=clean_labels(labels),
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime=PYTHON_RUNTIME, entry_point=ENTRY_POINT,
                service_account=pulumi.Output.concat("projects/", project, "/serviceAccounts/",
                                                     self.build_account.email),
                docker_repository=pulumi.Output.concat("projects/", project, "/locations/", location,
                                                       "/repositories/", repo_id),
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                    storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=bucket, object=self.source_object.name))),
            service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                available_memory=memory, available_cpu=str(vcpu), timeout_seconds=timeout_s,
                min_instance_count=0, max_instance_count=max_instances,
                max_instance_request_concurrency=1,  # one shard per instance: it uses every vCPU
                ingress_settings="ALLOW_INTERNAL_ONLY", all_traffic_on_latest_revision=True,
                service_account_email=self.service_account.email, environment_variables=env),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket_access, *build_grants]),
        )
        # The run.app URI of the function's Cloud Run service: Workflows reaches internal-only
        # services by that address (not by the cloudfunctions.net URL or a custom domain).
        self.url = self.function.service_config.apply(lambda sc: sc.uri if sc else None)
        self.service_account_email = self.service_account.email
        self.register_outputs({"url": self.url, "function": self.function.name,
                               "service_account": self.service_account_email,
                               "source_object": self.source_object.name})


class Orchestration(pulumi.ComponentResource):
    """A Cloud Workflows workflow driving rounds over `shards`; its service account alone may invoke.

    `spec` and `functions` (the blueprint's training: and functions: sections) ride along in the
    shard events, so the first round initialises the run in the store: no separate init step.
    """

    def __init__(self, name: str, *, shards: FunctionShards, region: str, store_url: pulumi.Input[str],
                 shard_count: int, call_timeout_s: int, max_rounds: int, budget_usd: float | None,
                 labels: dict[str, str], spec: dict | None = None, functions: dict | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:Orchestration", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-sa", account_id=service_account_id(name, "wf"),
            display_name=f"relaytrain {name} orchestrator", opts=child)
        self.invoker = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-invoker", name=shards.function.name, location=region, role="roles/run.invoker",
            member=_member(self.service_account.email), opts=child)

        def render(values: list) -> str:
            url, store = values
            return wf.to_yaml(wf.definition(wf.RoundPlan(
                function_url=url, store_url=store, shards=shard_count, call_timeout_s=call_timeout_s,
                max_rounds=max_rounds, budget_usd=budget_usd, spec=spec, functions=functions)))

        self.definition = pulumi.Output.all(shards.url, store_url).apply(render)
        self.workflow = gcp.workflows.Workflow(
            f"{name}-workflow",
            name=resource_name(name, 64),
            region=region, description=f"relaytrain {name}: shard rounds until done or over budget",
            service_account=self.service_account.email, source_contents=self.definition,
            call_log_level="LOG_ERRORS_ONLY", deletion_protection=False, labels=clean_labels(labels),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.invoker]),
        )
        self.register_outputs({"workflow": self.workflow.name, "service_account": self.service_account.email})


class TrainingNetwork(pulumi.ComponentResource):
    """A VPC for training nodes: one subnet with Private Google Access (GCS without a public IP),
    Cloud NAT for package downloads, SSH only through IAP, node-to-node traffic for multi-node runs."""

    def __init__(self, name: str, *, region: str, cidr: str = "10.20.0.0/24",
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:TrainingNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = gcp.compute.Network(f"{name}-vpc", auto_create_subnetworks=False, opts=child)
        self.subnetwork = gcp.compute.Subnetwork(
            f"{name}-subnet", network=self.network.id, region=region, ip_cidr_range=cidr,
            private_ip_google_access=True, opts=child)
        self.router = gcp.compute.Router(f"{name}-router", network=self.network.id, region=region, opts=child)
        self.nat = gcp.compute.RouterNat(
            f"{name}-nat", router=self.router.name, region=region, nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES", opts=child)
        self.iap_ssh = gcp.compute.Firewall(
            f"{name}-iap-ssh", network=self.network.id, direction="INGRESS", source_ranges=[IAP_RANGE],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])], opts=child)
        self.internal = gcp.compute.Firewall(
            f"{name}-internal", network=self.network.id, direction="INGRESS", source_ranges=[cidr],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp")], opts=child)
        self.register_outputs({"network": self.network.id, "subnetwork": self.subnetwork.id})


NODE_LOG_FILE = "/var/log/relaytrain/node.log"  # the node's stderr, commit lines included (tee'd there)
NODE_LOG_NAME = "relaytrain-node"  # the Ops Agent receiver id, which is the entries' log name
OPS_AGENT_CONFIG = "/etc/google-cloud-ops-agent/config.yaml"
OPS_AGENT_REPO_SCRIPT = "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"


def ops_agent_config() -> str:
    """The Ops Agent's logging config: the node's log file, each JSON line parsed into the entry's jsonPayload
    (a `parse_json` processor), so RunMonitoring's log-based metrics see the nodes' commit lines."""
    return "\n".join([
        "logging:",
        "  receivers:",
        f"    {NODE_LOG_NAME}:",
        "      type: files",
        f"      include_paths: [{NODE_LOG_FILE}]",
        "  processors:",
        "    relaytrain-json:",
        "      type: parse_json",
        "  service:",
        "    pipelines:",
        "      relaytrain:",
        f"        receivers: [{NODE_LOG_NAME}]",
        "        processors: [relaytrain-json]",
    ]) + "\n"


def _ops_agent_lines() -> list[str]:
    """Boot-script lines: install the Ops Agent if the image lacks it, give it `ops_agent_config`, restart it."""
    return [
        "systemctl list-unit-files google-cloud-ops-agent.service >/dev/null 2>&1 || "
        f"(curl -sSfO {OPS_AGENT_REPO_SCRIPT} && bash add-google-cloud-ops-agent-repo.sh --also-install) || "
        "echo 'relaytrain: warning: Ops Agent not installed; commit lines stay on the serial console' >&2",
        f"mkdir -p {NODE_LOG_FILE.rsplit('/', 1)[0]} /etc/google-cloud-ops-agent",
        f"cat > {OPS_AGENT_CONFIG} <<'OPSAGENT'\n{ops_agent_config()}OPSAGENT",
        "systemctl restart google-cloud-ops-agent || true  # telemetry: never stops training",
        f"exec 2> >(tee -a {NODE_LOG_FILE} >&2)  # the node's stderr (its commit lines) into the agent's file",
    ]


def startup_script(*, checkpoint_every_s: int, nodes: int, gpus_per_node: int = 1, init_args: list[str] = (),
                   cost_per_second: float = 0.0, environment: dict[str, str] | None = None) -> str:
    """Boot script: fetch the runtime archive, install it with CUDA torch in a venv, write the
    run spec (`relaytrain-runtime init INIT_ARGS`, idempotent for an identical spec), train,
    accruing `cost_per_second` (the whole job's: every node) into the run, so the budget stop holds.
    `environment` is exported to the node (relaytrain.worker.node_environment: live MLflow logging).

    Runs on every boot, so a stopped (or preempted and restarted) node resumes from the store.
    The store URL, archive URL and node rank come from instance metadata. The node's stderr also goes to
    NODE_LOG_FILE, which the Ops Agent ships as jsonPayload (log `NODE_LOG_NAME`; see `ops_agent_config`).
    """
    node = f"node --store \"$STORE\" --checkpoint-every {int(checkpoint_every_s)} --poweroff-when-done"
    if cost_per_second > 0:
        node += f" --cost-per-second {cost_per_second:.8g}"
    launch = f"$VENV/bin/python -m relaytrain_runtime {node}"  # one GPU: one process
    if nodes > 1:  # one DDP job across the nodes, one process per GPU
        launch = ("$VENV/bin/torchrun --nnodes " + str(nodes) + " --nproc-per-node gpu --node-rank \"$RANK\" "
                  "--master-addr \"$MASTER\" --master-port 29500 -m relaytrain_runtime " + node)
    elif gpus_per_node > 1:
        launch = f"$VENV/bin/torchrun --standalone --nproc-per-node gpu -m relaytrain_runtime {node}"
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        "meta() { curl -sf -H 'Metadata-Flavor: Google' "
        "\"http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1\"; }",
        "STORE=$(meta relaytrain-store)",
        "SOURCE=$(meta relaytrain-source)",
        "RANK=$(meta relaytrain-node-rank || echo 0)",
        "MASTER=$(meta relaytrain-master || echo localhost)",
        "ROOT=/opt/relaytrain VENV=/opt/relaytrain/venv",
        *_ops_agent_lines(),
        "mkdir -p $ROOT && cd $ROOT",
        "gcloud storage cp \"$SOURCE\" source.zip",
        "rm -rf src && python3 -m zipfile -e source.zip src",
        "[ -d $VENV ] || python3 -m venv --system-site-packages $VENV",
        "$VENV/bin/pip install -q -r src/requirements-node.txt",
        "export PYTHONPATH=$ROOT/src",
        f"export {COMMIT_LOG_ENV}=1  # one JSON log line per commit: RunMonitoring's log-based metrics",
    ] + [f"export {k}={shlex.quote(v)}" for k, v in sorted((environment or {}).items())] + (
        ["$VENV/bin/pip install -q 'mlflow-skinny>=3'  # live MLflow logging"]
        if MLFLOW_URI_ENV in (environment or {}) else []) + (
        ["[ \"$RANK\" != 0 ] || $VENV/bin/python -m relaytrain_runtime init --store \"$STORE\" "
          + " ".join(shlex.quote(a) for a in init_args)] if init_args else []) + [
        launch,
    ]
    return "\n".join(lines) + "\n"


class GpuTrainingNode(pulumi.ComponentResource):
    """GCE GPU instance(s) training one run: `nodes` instances form one torchrun job.

    GPUs require `onHostMaintenance: TERMINATE`. Spot instances stop on preemption (disk kept)
    and resume from the store when restarted. Shielded VM with vTPM and integrity monitoring
    (secure boot stays off: the image's NVIDIA driver modules are not signed for it). OS Login
    only, no project SSH keys; no external IP unless asked (the network gives NAT and Private
    Google Access). A dedicated service account with object access to `bucket` alone. The runtime
    archive (the same one the functions deploy) is uploaded next to the run and installed at boot.
    """

    def __init__(self, name: str, *, bucket: pulumi.Input[str], store_url: pulumi.Input[str],
                 source: SourceArchive, zone: str, machine_type: str, accelerator_type: str,
                 accelerator_count: int, subnetwork: pulumi.Input[str], labels: dict[str, str], nodes: int = 1,
                 spot: bool = False, external_ip: bool = False, image: str = DLVM_IMAGE, disk_gb: int = 200,
                 checkpoint_every_s: int = 600, init_args: list[str] = (), cost_per_second: float = 0.0,
                 environment: dict[str, str] | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:GpuTrainingNode", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account, self.bucket_access, self.source_object = _worker_identity(
            name, "node", f"relaytrain {name} GPU node", bucket, source, child)
        source_url = pulumi.Output.concat("gs://", self.source_object.bucket, "/", self.source_object.name)
        if spot:
            scheduling = gcp.compute.InstanceSchedulingArgs(
                provisioning_model="SPOT", preemptible=True, automatic_restart=False,
                on_host_maintenance="TERMINATE", instance_termination_action="STOP")
        else:
            scheduling = gcp.compute.InstanceSchedulingArgs(
                provisioning_model="STANDARD", automatic_restart=True, on_host_maintenance="TERMINATE")
        script = startup_script(checkpoint_every_s=checkpoint_every_s, nodes=nodes,
                                gpus_per_node=accelerator_count, init_args=list(init_args),
                                cost_per_second=cost_per_second, environment=environment)
        self.instances: list[gcp.compute.Instance] = []
        master: pulumi.Input[str] = "localhost"
        for rank in range(nodes):
            instance = gcp.compute.Instance(
                f"{name}-{rank}",
                zone=zone, machine_type=machine_type,
                guest_accelerators=[gcp.compute.InstanceGuestAcceleratorArgs(type=accelerator_type,
                                                                             count=accelerator_count)],
                scheduling=scheduling,
                boot_disk=gcp.compute.InstanceBootDiskArgs(
                    auto_delete=True,
                    initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                        image=image, size=disk_gb, type="pd-ssd")),
                network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(
                    subnetwork=subnetwork,
                    access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs()] if external_ip else [])],
                shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                    enable_secure_boot=False, enable_vtpm=True, enable_integrity_monitoring=True),
                service_account=gcp.compute.InstanceServiceAccountArgs(
                    email=self.service_account.email, scopes=["cloud-platform"]),
                metadata={
                    "enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE", "install-nvidia-driver": "True",
                    "relaytrain-store": store_url, "relaytrain-source": source_url,
                    "relaytrain-node-rank": str(rank), "relaytrain-master": master,
                },
                metadata_startup_script=script,
                labels=clean_labels({**labels, "relaytrain-node-rank": str(rank)}),
                allow_stopping_for_update=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket_access, self.source_object]),
            )
            if rank == 0:
                master = instance.network_interfaces[0].network_ip
            self.instances.append(instance)
        self.register_outputs({"instances": [i.name for i in self.instances],
                               "service_account": self.service_account.email})


class CostBudget(pulumi.ComponentResource):
    """A Cloud Billing budget for one run: the spend of resources carrying `labels` (one key, value
    pair, e.g. relaytrain-blueprint), with alerts to the billing account's admins at 50 %, 90 % and
    100 % of actual spend and at 100 % of forecast spend. It alerts; it stops nothing (the run's
    own accrued-cost check does that)."""

    def __init__(self, name: str, *, billing_account: str, amount_usd: float, labels: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:CostBudget", name, None, opts)
        units = int(amount_usd)
        self.budget = gcp.billing.Budget(
            f"{name}-budget",
            billing_account=billing_account,
            display_name=resource_name(name)[:60],
            budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                labels=clean_labels(labels), credit_types_treatment="INCLUDE_ALL_CREDITS"
            ),
            amount=gcp.billing.BudgetAmountArgs(
                specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code="USD", units=str(units), nanos=round((amount_usd - units) * 1e9)
                )
            ),
            threshold_rules=[gcp.billing.BudgetThresholdRuleArgs(threshold_percent=p) for p in (0.5, 0.9, 1.0)]
            + [gcp.billing.BudgetThresholdRuleArgs(threshold_percent=1.0, spend_basis="FORECASTED_SPEND")],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"budget": self.budget.name})


# --------------------------------------------------------------------------------------------- monitoring

LOG_METRICS = {  # log-based metric -> (unit, description); values from the commit log line's field of that name
    "loss": ("1", "training loss at a commit"),
    "val_loss": ("1", "validation loss of the evaluations a commit carries"),
    "tokens_per_s": ("1/s", "mean training tokens per second of a commit's steps"),
    "step_s": ("s", "mean seconds per optimizer step of a commit"),
    "cost_usd": ("1", "the run's accrued cost in USD at a commit"),
}
# ~10 % wide buckets from 1e-4 to ~1.3e6: losses, seconds, throughputs and dollars alike
METRIC_BUCKETS = {"scale": 1e-4, "growth_factor": 1.2, "num_finite_buckets": 128}


COMMIT_LOG_NAMES = ("run.googleapis.com%2Fstderr", NODE_LOG_NAME)  # shards (Cloud Run functions), GCE nodes


def commit_filter(run: str, field: str | None = None) -> str:
    """Cloud Logging filter of one run's commit lines (`relaytrain_runtime.report.logline`): the shards'
    stderr and the nodes' Ops Agent log."""
    logs = " OR ".join(f'logName:"/logs/{name}"' for name in COMMIT_LOG_NAMES)
    base = f'({logs}) AND jsonPayload.relaytrain="{COMMIT_EVENT}" AND jsonPayload.run="{run}"'
    return base + (f" AND jsonPayload.{field}:*" if field else "")


def dashboard_json(run: str, metric_types: dict[str, str]) -> str:
    """A Cloud Monitoring dashboard: one chart per log-based metric (median per minute, per worker)."""

    def tile(i: int, title: str, metric_type: str, aligner: str, period: str) -> dict:
        query = {"timeSeriesFilter": {"filter": f'metric.type="{metric_type}"', "aggregation": {
            "alignmentPeriod": period, "perSeriesAligner": aligner}}}
        return {"xPos": 6 * (i % 2), "yPos": 4 * (i // 2), "width": 6, "height": 4, "widget": {
            "title": title, "xyChart": {"dataSets": [{"timeSeriesQuery": query, "plotType": "LINE"}]}}}

    tiles = [tile(i, f"{name} ({LOG_METRICS[name][1]})", metric_types[name], "ALIGN_PERCENTILE_50", "60s")
             for i, name in enumerate(LOG_METRICS)]
    tiles.append(tile(len(tiles), "commits per 5 minutes", metric_types["commits"], "ALIGN_SUM", "300s"))
    return json.dumps({"displayName": f"relaytrain {run}", "mosaicLayout": {"columns": 12, "tiles": tiles}},
                      sort_keys=True)


class RunMonitoring(pulumi.ComponentResource):
    """The run's metrics in Cloud Monitoring, from the structured line every commit logs (shards and
    nodes alike): log-based metrics `relaytrain/<run>/<field>` (distributions of loss, val_loss,
    tokens_per_s, step_s, cost_usd, and a commit counter), a dashboard of them and, with a budget,
    an alert policy when the run's accrued cost passes it, notifying an email channel per address of
    `emails` (the blueprint's `alerts.email`; incidents in the console either way). The Cloud Billing
    budget is `CostBudget`."""

    def __init__(self, name: str, *, run: str, budget_usd: float | None = None, emails: list[str] = (),
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("relaytrain:gcp:RunMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"relaytrain/{resource_name(run)}"
        self.metrics: dict[str, gcp.logging.Metric] = {}
        for field, (unit, description) in LOG_METRICS.items():
            self.metrics[field] = gcp.logging.Metric(
                f"{name}-{field.replace('_', '-')}", name=f"{prefix}/{field}",
                description=f"relaytrain {run}: {description}",
                filter=commit_filter(run, field), value_extractor=f"EXTRACT(jsonPayload.{field})",
                metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                    metric_kind="DELTA", value_type="DISTRIBUTION", unit=unit,
                    display_name=f"relaytrain {run} {field}"),
                bucket_options=gcp.logging.MetricBucketOptionsArgs(
                    exponential_buckets=gcp.logging.MetricBucketOptionsExponentialBucketsArgs(**METRIC_BUCKETS)),
                opts=child)
        self.metrics["commits"] = gcp.logging.Metric(
            f"{name}-commits", name=f"{prefix}/commits", description=f"relaytrain {run}: commits",
            filter=commit_filter(run), metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                metric_kind="DELTA", value_type="INT64", unit="1", display_name=f"relaytrain {run} commits"),
            opts=child)
        types = {k: f"logging.googleapis.com/user/{prefix}/{k}" for k in self.metrics}
        after = pulumi.ResourceOptions(parent=self, depends_on=list(self.metrics.values()))
        self.dashboard = gcp.monitoring.Dashboard(f"{name}-dashboard", dashboard_json=dashboard_json(run, types),
                                                  opts=after)
        self.channels = [gcp.monitoring.NotificationChannel(
            f"{name}-email-{i}", type="email", display_name=f"relaytrain {run}: {address}",
            labels={"email_address": address}, opts=child) for i, address in enumerate(emails)]
        self.cost_alert = None
        if budget_usd is not None:
            self.cost_alert = gcp.monitoring.AlertPolicy(
                f"{name}-cost-alert", display_name=f"relaytrain {run}: accrued cost over ${budget_usd:g}",
                combiner="OR", conditions=[gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=f"cost_usd > {budget_usd:g}",
                    condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=f'metric.type="{types["cost_usd"]}"', comparison="COMPARISON_GT",
                        threshold_value=budget_usd, duration="0s",
                        aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                            alignment_period="300s", per_series_aligner="ALIGN_PERCENTILE_99")]))],
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                    content=f"Run {run} has accrued more than its budget_usd; see `relaytrain status`.",
                    mime_type="text/markdown"),
                notification_channels=[channel.name for channel in self.channels],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.metrics.values(), *self.channels]))
        self.register_outputs({"dashboard": self.dashboard.id, "metrics": [m.name for m in self.metrics.values()]})
