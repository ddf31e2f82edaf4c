"""The blueprint-to-worker adapter: everything a worker is handed, from one resolved blueprint.

    spec_payload(bp)        the run spec as the JSON object events carry (`"spec"`)
    spec_flags(spec)        the run spec as `relaytrain-runtime init/train` options
    functions_payload(bp)   the function-shards settings as events carry them (`"functions"`)
    preparation(bp)         the dataset's preparation settings as the preprocess plan event carries them
    preparation_flags(bp)   the same as `relaytrain-runtime preprocess` options
    cost_per_second(bp)     what one worker of the blueprint's topology costs per second
    cache_environment(bp)   every worker's shard-cache budget (cache.max_gb)
    node_environment(bp)    environment variables a GPU node runs with (live MLflow logging, the cache budget)
    run_store(root, run)    a run's store URL under a bucket URL (`ROOT/runs/RUN`)

The CDK stack, the Pulumi program, the local runners and calibration all come here, so the spec
leaves the kit in one encoding per channel. Every function expects a resolved blueprint
(`relaytrain.blueprint.load` resolves): its worker sections are complete, nothing is defaulted here.
"""

from __future__ import annotations

from dataclasses import fields

from relaytrain import prices
from relaytrain.blueprint import limits as L
from relaytrain.blueprint.schema import Blueprint
from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.prepare import PRETRAINED
from relaytrain_runtime.pricing import INSTANCE_HOURLY_USD, gcf_cost_per_second, lambda_cost_per_second
from relaytrain_runtime.report.live import MLFLOW_URI_ENV
from relaytrain_runtime.shards.config import ShardsConfig
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store.cache import BUDGET_ENV as CACHE_BUDGET_ENV

RUN_PREFIX = "runs/"  # every run's store is BUCKET/runs/NAME (s3:// on AWS, gs:// on GCP)
DATA_PREFIX = "data/"  # prepared datasets shared by runs, BUCKET/data/NAME


def run_store(root: str, run: str) -> str:
    """The store URL of run `run` in the bucket at `root` (`s3://BUCKET` or `gs://BUCKET`)."""
    return f"{root.rstrip('/')}/{RUN_PREFIX}{run}"


def run_spec(bp: Blueprint) -> RunSpec:
    return bp.training.run_spec()


def spec_payload(bp: Blueprint) -> dict:
    """The run spec as events carry it (versioned, every field explicit): Step Functions, Workflows."""
    return run_spec(bp).to_dict()


def spec_flags(spec: RunSpec) -> list[str]:
    """The run spec as the runtime's `--preset ... --steps ...` options (relaytrain_runtime/verbs/_common.py)."""
    return [arg for f in fields(RunSpec) for arg in ("--" + f.name.replace("_", "-"), str(getattr(spec, f.name)))]


def shards_config(bp: Blueprint) -> ShardsConfig:
    if bp.functions is None:
        raise RelayError(f"blueprint {bp.name!r} ({bp.topology}) has no functions: section")
    return bp.functions.shards_config()


def functions_payload(bp: Blueprint) -> dict:
    """The run's half of `functions:` as events carry it; the deployment fields (memory, vCPU,
    timeout, instances) stay with the deployment."""
    return shards_config(bp).to_dict()


def preparation(bp: Blueprint) -> dict:
    """`dataset:`'s preparation settings as the preprocess plan event takes them (relaytrain_runtime.preprocess):
    every one explicit, the vocabulary resolved to the model's when the blueprint leaves it 0, `format` and
    `field` only when set (else the runtime detects the format and picks the default field)."""
    d = bp.dataset
    out = {"tokenizer": d.tokenizer, "vocab_size": d.vocab_size or run_spec(bp).model.vocab_size,
           "val_fraction": d.val_fraction}
    out.update({name: getattr(d, name) for name in ("format", "field") if getattr(d, name)})
    return out


def preparation_flags(bp: Blueprint) -> list[str]:
    """The preparation settings as `relaytrain-runtime preprocess` options (the event's names, dashed), with
    `--init-from` for a pretrained tokenizer (a local run has the model's directory, not a stored run)."""
    settings = preparation(bp)
    flags = [arg for name, value in settings.items() for arg in ("--" + name.replace("_", "-"), str(value))]
    return flags + (["--init-from", bp.training.init_from] if settings["tokenizer"] == PRETRAINED else [])


def round_deadline_s(bp: Blueprint) -> int:
    """Seconds a round's shards get before stragglers are retried: the blueprint's, at most the timeout."""
    fn = bp.functions
    return min(fn.round_deadline_s or fn.timeout_s, fn.timeout_s)


def node_hour_lines(bp: Blueprint, spot: bool) -> list[tuple[str, float, str]]:
    """(item, quantity per node-hour, price key) of one GPU node: the instance, and attached GPUs on GCE n1."""
    g, suffix, kind = bp.gpu, ".spot" if spot else "", "spot" if spot else "on-demand"
    if bp.cloud == "aws":
        return [(f"EC2 {g.instance_type} {kind}", 1, f"ec2.{g.instance_type}{suffix}")]
    out = [(f"GCE {g.instance_type} {kind}", 1, f"gce.{g.instance_type}{suffix}")]
    if not L.GCP_INSTANCES[g.instance_type].gpu:
        out.append((f"GPU {g.accelerator_type} x{g.accelerator_count}", g.accelerator_count,
                    f"gce.{g.accelerator_type}{suffix}"))
    return out


def node_hourly_usd(bp: Blueprint, spot: bool | None = None) -> float:
    """USD per hour of one GPU node of the blueprint (its own spot setting unless told)."""
    spot = bp.gpu.spot if spot is None else spot
    return sum(qty * prices.price(key).usd for _item, qty, key in node_hour_lines(bp, spot))


def cost_per_second(bp: Blueprint) -> float:
    """What one worker of the blueprint costs per second: a Lambda leg, a function shard, or all GPU nodes."""
    if bp.topology == "lambda-steps":
        return lambda_cost_per_second(bp.lambda_.memory_mb, bp.lambda_.architecture)
    if bp.topology == "function-shards":
        return gcf_cost_per_second(bp.functions.vcpu, bp.functions.memory_gib)
    return node_hourly_usd(bp) * bp.gpu.nodes / 3600


def node_price_flags(bp: Blueprint) -> str:
    """`relaytrain-runtime node` flags that make the run accrue its instance's price (the runtime's own
    table, relaytrain_runtime.pricing); none for an instance type that table does not price."""
    if bp.gpu.instance_type not in INSTANCE_HOURLY_USD:
        return ""
    return f"--instance-type {bp.gpu.instance_type}" + (" --spot" if bp.gpu.spot else "")


def cache_environment(bp: Blueprint) -> dict[str, str]:
    """Every worker's shard-cache budget from `cache.max_gb` (RELAYTRAIN_CACHE_BUDGET_MB; unset: the cache's
    filesystem decides, relaytrain_runtime.store.cache.cache_budget). EFS reports exabytes free and bills
    per GB-month: a deployed EFS cache wants a cap."""
    return {CACHE_BUDGET_ENV: f"{round(bp.cache.max_gb * 1024)}"} if bp.cache.max_gb > 0 else {}


def node_environment(bp: Blueprint) -> dict[str, str]:
    """What a GPU node's process environment carries from the blueprint: `tracking.mlflow` as
    RELAYTRAIN_MLFLOW_URI, so the node logs each commit to MLflow live (relaytrain_runtime.report.live),
    and the cache budget (cache_environment)."""
    return {**({MLFLOW_URI_ENV: bp.tracking.mlflow} if bp.tracking.mlflow else {}), **cache_environment(bp)}


def lambda_vcpu(memory_mb: int) -> float:
    """The CPU share a Lambda's memory setting buys (1,769 MB per vCPU, at most 6)."""
    return min(L.LAMBDA_MAX_VCPU, memory_mb / L.LAMBDA_MB_PER_VCPU)
