"""The Pulumi program: one blueprint in, its whole Google Cloud topology out.

`build(blueprint, config)` is a plain function (no work at import), so tests and review plans run
it repeatedly in one process under Pulumi's mocks; `relaytrain/gcp/__main__.py` is what
`pulumi up` runs (it reads the stack config and calls `build`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields

import pulumi
from relaytrain_runtime import RelayError

from relaytrain.blueprint import limits
from relaytrain.blueprint.schema import Blueprint
from relaytrain.gcp import components as c
from relaytrain.gcp import workflow as wf
from relaytrain.gcp.source import SourceArchive, build_source_archive
from relaytrain.plan import node_hourly_usd

DEFAULT_REGION = limits.DEFAULT_REGION["gcp"]
DEFAULT_MACHINE_TYPE = limits.DEFAULT_INSTANCE["gcp"]
DEFAULT_ACCELERATOR = "nvidia-tesla-v100"  # attached to n1 machine types unless the blueprint names one
HANDLER_MARGIN_S = 60  # the handler answers this long before the workflow's HTTP call gives up
SUPPORTED = ("function-shards", "gpu-node")
RUN_PREFIX = "runs/"  # every run's store is gs://BUCKET/runs/NAME (as on AWS: s3://BUCKET/runs/NAME)


class GcpProgramError(RelayError):
    pass


@dataclass(frozen=True)
class GcpConfig:
    """Stack settings that are not in the blueprint (`pulumi config`)."""

    project: str = ""
    region: str = ""  # gcp:region; the blueprint's region wins when only it is set
    force_destroy: bool = False  # let `pulumi destroy` delete a bucket that still holds objects
    billing_account: str = ""  # relaytrain:billingAccount: with budget_usd, a Cloud Billing budget alert
    source: SourceArchive | None = field(default=None, compare=False)  # prebuilt archive (tests)


@dataclass
class Deployment:
    """What `build` created, for tests and for stack outputs."""

    region: str
    store_url: pulumi.Output
    bucket: pulumi.Output
    init_command: pulumi.Output
    dataset: c.DatasetBucket | None = None
    shards: c.FunctionShards | None = None
    orchestration: c.Orchestration | None = None
    network: c.TrainingNetwork | None = None
    node: c.GpuTrainingNode | None = None
    budget: c.CostBudget | None = None
    monitoring: c.RunMonitoring | None = None


def _job_cost_per_second(bp: Blueprint, machine_type: str, accelerator: str, count: int) -> float:
    """What every node of the job costs per second (the planner's prices): the node accrues it into the baton."""
    node = bp.gpu.model_copy(update={"instance_type": machine_type, "accelerator_type": accelerator,
                                     "accelerator_count": count})
    return node_hourly_usd(bp.model_copy(update={"gpu": node})) * bp.gpu.nodes / 3600


def accelerator_of(machine_type: str, accelerator_type: str, accelerator_count: int) -> tuple[str, int]:
    """The GPUs a node gets: attached ones as the blueprint says (n1), or those an accelerator-optimized
    machine type (a2, g2) comes with, stated explicitly so reviews and policies see them."""
    if accelerator_type:
        return accelerator_type, accelerator_count or 1
    inst = limits.GCP_INSTANCES.get(machine_type)
    if inst is not None and inst.gpu:
        return limits.GPUS[inst.gpu].gcp_name, inst.gpus
    return DEFAULT_ACCELERATOR, accelerator_count or 1


def spec_args(bp: Blueprint) -> list[str]:
    """`relaytrain-runtime init` options for the blueprint's run spec, every field explicit."""
    spec = bp.training.run_spec()
    return [a for f in fields(spec) for a in ("--" + f.name.replace("_", "-"), str(getattr(spec, f.name)))]


def region_of(bp: Blueprint, config: GcpConfig) -> str:
    if bp.region and config.region and bp.region != config.region:
        raise GcpProgramError(f"blueprint {bp.name}: region {bp.region!r} differs from stack config gcp:region "
                              f"{config.region!r} (set one of them, or make them equal)")
    return bp.region or config.region or DEFAULT_REGION


def build(bp: Blueprint, config: GcpConfig | None = None) -> Deployment:
    config = config or GcpConfig()
    if bp.cloud != "gcp":
        raise GcpProgramError(f"blueprint {bp.name}: cloud is {bp.cloud!r}; the Pulumi program builds cloud: gcp")
    if bp.topology not in SUPPORTED:
        raise GcpProgramError(f"blueprint {bp.name}: topology {bp.topology!r} is not available on gcp "
                              f"(choose one of: {', '.join(SUPPORTED)})")
    region = region_of(bp, config)
    labels = {**bp.tags, "relaytrain-blueprint": bp.name, "relaytrain-topology": bp.topology}

    dataset = None
    if bp.dataset.bucket:
        bucket: pulumi.Output = pulumi.Output.from_input(bp.dataset.bucket)
    else:
        exchange = [f"{RUN_PREFIX}{bp.name}/rounds/"] if bp.topology == "function-shards" else []
        dataset = c.DatasetBucket(f"{bp.name}-data", location=region, force_destroy=config.force_destroy,
                                  exchange_prefixes=exchange, labels={**labels, "relaytrain-component": "dataset"})
        bucket = dataset.name
    store_url = pulumi.Output.concat("gs://", bucket, f"/{RUN_PREFIX}{bp.name}")
    init_command = store_url.apply(lambda url: shlex.join(
        ["relaytrain-runtime", "init", "--store", url] + spec_args(bp)))
    out = Deployment(region=region, store_url=store_url, bucket=bucket, init_command=init_command, dataset=dataset)
    source = config.source or build_source_archive()

    if bp.topology == "function-shards":
        out.shards, out.orchestration = _function_shards(bp, config, region, bucket, store_url, source, labels)
    else:
        out.network, out.node = _gpu_node(bp, region, bucket, store_url, source, labels)
    if bp.budget_usd is not None and config.billing_account:
        out.budget = c.CostBudget(f"{bp.name}-cost", billing_account=config.billing_account,
                                  amount_usd=bp.budget_usd, labels={"relaytrain-blueprint": bp.name})
    out.monitoring = c.RunMonitoring(f"{bp.name}-monitoring", run=bp.name, budget_usd=bp.budget_usd)
    return out


def _function_shards(bp: Blueprint, config: GcpConfig, region: str, bucket, store_url, source, labels):
    fs = bp.functions
    if fs is None:
        raise GcpProgramError(f"blueprint {bp.name}: topology function-shards needs a functions: section")
    if not config.project:
        raise GcpProgramError(f"blueprint {bp.name}: function shards need the project id "
                              f"(pulumi config set gcp:project PROJECT)")
    deadline = min(fs.round_deadline_s or fs.timeout_s, fs.timeout_s)
    handler_timeout = min(deadline, wf.MAX_CALL_TIMEOUT_S - HANDLER_MARGIN_S)
    shards = c.FunctionShards(
        f"{bp.name}-shards", project=config.project, bucket=bucket, source=source, location=region,
        memory_gib=fs.memory_gib, vcpu=fs.vcpu, timeout_s=fs.timeout_s, max_instances=fs.max_instances or fs.shards,
        handler_timeout_s=handler_timeout, labels={**labels, "relaytrain-component": "shards"})
    rounds = c.Orchestration(
        f"{bp.name}-rounds", shards=shards, region=region, store_url=store_url, shard_count=fs.shards,
        call_timeout_s=handler_timeout + HANDLER_MARGIN_S,
        max_rounds=wf.max_rounds(bp.training.steps, fs.sync, fs.local_steps), budget_usd=bp.budget_usd,
        spec=bp.training.model_dump(), functions=fs.model_dump(),
        labels={**labels, "relaytrain-component": "orchestration"})
    return shards, rounds


def _gpu_node(bp: Blueprint, region: str, bucket, store_url, source, labels):
    gpu = bp.gpu
    if gpu is None:
        raise GcpProgramError(f"blueprint {bp.name}: topology gpu-node needs a gpu: section")
    machine_type = gpu.instance_type or DEFAULT_MACHINE_TYPE
    accelerator, count = accelerator_of(machine_type, gpu.accelerator_type, gpu.accelerator_count)
    network = c.TrainingNetwork(f"{bp.name}-net", region=region)
    node = c.GpuTrainingNode(
        f"{bp.name}-node", bucket=bucket, store_url=store_url, source=source,
        zone=gpu.zone or f"{region}-a", machine_type=machine_type, accelerator_type=accelerator,
        accelerator_count=count, subnetwork=network.subnetwork.id,
        labels={**labels, "relaytrain-component": "gpu-node"}, nodes=gpu.nodes, spot=gpu.spot,
        external_ip=gpu.external_ip, image=gpu.image or c.DLVM_IMAGE, disk_gb=gpu.root_volume_gb,
        checkpoint_every_s=gpu.checkpoint_every_s, init_args=spec_args(bp),
        cost_per_second=_job_cost_per_second(bp, machine_type, accelerator, count))
    return network, node


def export(deployment: Deployment) -> None:
    """Stack outputs a user needs to start and watch a run."""
    pulumi.export("region", deployment.region)
    pulumi.export("bucket", deployment.bucket)
    pulumi.export("store_url", deployment.store_url)
    pulumi.export("init_command", deployment.init_command)
    if deployment.orchestration:
        pulumi.export("workflow", deployment.orchestration.workflow.name)
        pulumi.export("function_url", deployment.shards.url)
    if deployment.node:
        pulumi.export("instances", [i.name for i in deployment.node.instances])
        pulumi.export("zone", deployment.node.instances[0].zone)
    if deployment.monitoring:
        pulumi.export("dashboard", deployment.monitoring.dashboard.id)
