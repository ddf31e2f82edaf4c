"""The Pulumi program: one blueprint in, its whole Google Cloud topology out.

`build(blueprint, config)` is a plain function (no work at import), so tests and review plans run
it repeatedly in one process under Pulumi's mocks; `relaytrain/gcp/__main__.py` is what
`pulumi up` runs (it reads the stack config and calls `build`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import pulumi

from relaytrain.blueprint.schema import Blueprint
from relaytrain.gcp import components as c
from relaytrain.gcp import workflow as wf
from relaytrain.gcp.source import SourceArchive, build_source_archive
from relaytrain.worker import (
    RUN_PREFIX,
    cache_environment,
    cost_per_second,
    functions_payload,
    node_environment,
    round_deadline_s,
    run_spec,
    spec_flags,
    spec_payload,
)
from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import ROUNDS_PREFIX

HANDLER_MARGIN_S = 60  # the handler answers this long before the workflow's HTTP call gives up
SUPPORTED = ("function-shards", "gpu-node")


class GcpProgramError(RelayError):
    pass


@dataclass(frozen=True)
class GcpConfig:
    """Stack settings that are not in the blueprint (`pulumi config`)."""

    project: str = ""
    region: str = ""  # gcp:region; must equal the blueprint's (resolved) region when set
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



def spec_args(bp: Blueprint) -> list[str]:
    """`relaytrain-runtime init` options for the blueprint's run spec, every field explicit."""
    return spec_flags(run_spec(bp))


def region_of(bp: Blueprint, config: GcpConfig) -> str:
    if config.region and bp.region != config.region:
        raise GcpProgramError(f"blueprint {bp.name}: region {bp.region!r} differs from stack config gcp:region "
                              f"{config.region!r} (set one of them, or make them equal)")
    return bp.region


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
        exchange = [f"{RUN_PREFIX}{bp.name}/{ROUNDS_PREFIX}"] if bp.topology == "function-shards" else []
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
    out.monitoring = c.RunMonitoring(f"{bp.name}-monitoring", run=bp.name, budget_usd=bp.budget_usd,
                                     emails=bp.alerts.email)
    return out


def _function_shards(bp: Blueprint, config: GcpConfig, region: str, bucket, store_url, source, labels):
    fs = bp.functions
    if fs is None:
        raise GcpProgramError(f"blueprint {bp.name}: topology function-shards needs a functions: section")
    if not config.project:
        raise GcpProgramError(f"blueprint {bp.name}: function shards need the project id "
                              f"(pulumi config set gcp:project PROJECT)")
    handler_timeout = min(round_deadline_s(bp), wf.MAX_CALL_TIMEOUT_S - HANDLER_MARGIN_S)
    shards = c.FunctionShards(
        f"{bp.name}-shards", project=config.project, bucket=bucket, source=source, location=region,
        memory_gib=fs.memory_gib, vcpu=fs.vcpu, timeout_s=fs.timeout_s, max_instances=fs.max_instances,
        handler_timeout_s=handler_timeout, labels={**labels, "relaytrain-component": "shards"},
        environment=cache_environment(bp))
    rounds = c.Orchestration(
        f"{bp.name}-rounds", shards=shards, region=region, store_url=store_url, shard_count=fs.shards,
        call_timeout_s=handler_timeout + HANDLER_MARGIN_S,
        max_rounds=wf.max_rounds(bp.training.steps, fs.sync, fs.local_steps), budget_usd=bp.budget_usd,
        spec=spec_payload(bp), functions=functions_payload(bp),
        labels={**labels, "relaytrain-component": "orchestration"})
    return shards, rounds


def _gpu_node(bp: Blueprint, region: str, bucket, store_url, source, labels):
    gpu = bp.gpu
    if gpu is None:
        raise GcpProgramError(f"blueprint {bp.name}: topology gpu-node needs a gpu: section")
    network = c.TrainingNetwork(f"{bp.name}-net", region=region)
    node = c.GpuTrainingNode(
        f"{bp.name}-node", bucket=bucket, store_url=store_url, source=source,
        zone=gpu.zone, machine_type=gpu.instance_type, accelerator_type=gpu.accelerator_type,
        accelerator_count=gpu.accelerator_count, subnetwork=network.subnetwork.id,
        labels={**labels, "relaytrain-component": "gpu-node"}, nodes=gpu.nodes, spot=gpu.spot,
        external_ip=gpu.external_ip, image=gpu.image, disk_gb=gpu.root_volume_gb,
        checkpoint_every_s=gpu.checkpoint_every_s, init_args=spec_args(bp),
        cost_per_second=cost_per_second(bp), environment=node_environment(bp))
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
