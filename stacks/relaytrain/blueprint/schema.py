"""The blueprint schema: one typed, strict model for every topology.

A blueprint is one YAML file read by the CDK app, the Pulumi program, the planner and the local
runner. Field names here are the contract between those parts: rename nothing without updating
all of them. `training:` and the run half of `functions:` are derived from the runtime's RunSpec and
ShardsConfig (one source of truth; their own `problems()` check the values).
Platform limits, feasibility and error formatting are layered on in
`relaytrain.blueprint.validate` / `relaytrain.blueprint.load`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from relaytrain_runtime.contract import prepare
from relaytrain_runtime.shards.config import ShardsConfig
from relaytrain_runtime.spec import RunSpec, field_types

Cloud = Literal["aws", "gcp"]
Topology = Literal["lambda-steps", "function-shards", "gpu-node", "hybrid"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def settings_fields(record_type) -> dict:
    """Pydantic field definitions for every field of a runtime settings dataclass (RunSpec, ShardsConfig):
    the same names, types and defaults, so the blueprint schema can never drift from the runtime's. A
    field the dataclass lists in its CHOICES becomes an enumeration (its values shown in errors)."""
    out = {}
    choices = getattr(record_type, "CHOICES", {})
    for f in dataclasses.fields(record_type):
        hint = Literal[choices[f.name]] if f.name in choices else field_types(record_type)[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lenient = typing.get_origin(hint) in (tuple, list)  # YAML gives lists; the runtime's check takes both
        out[f.name] = (hint, Field(default=default, strict=False) if lenient else default)
    return out


class TrainingSettings(Strict):
    """A blueprint's `training:` section: the run spec, field for field (fields derived below)."""

    def run_spec(self) -> RunSpec:
        return RunSpec(**self.model_dump())


Training = create_model("Training", __base__=TrainingSettings, __doc__=TrainingSettings.__doc__,
                        **settings_fields(RunSpec))


class Lambda(Strict):
    """An AWS Lambda function running the runtime image (a step trainer or a hybrid stage)."""

    memory_mb: int = 10240
    timeout_s: int = 900
    ephemeral_mb: int = 10240  # /tmp
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    image_size_mb: int = 2600  # estimated runtime image size, checked against the 10 GB limit
    leg_margin_s: int = 30  # the leg stops this long before the invocation deadline
    retries: int = 3  # Step Functions retries on Lambda service errors and timeouts
    max_concurrency: int = 0  # hybrid fan-out: 0 = the platform default


class FunctionsDeployment(Strict):
    """Google Cloud Functions (2nd gen) data-parallel shards orchestrated by Cloud Workflows.

    The deployment settings are declared here (the kit's own); the run's settings (shards, sync,
    local_steps, exchange_dtype, ...) are the fields of the runtime's ShardsConfig, derived below.
    """

    memory_gib: float = 16
    vcpu: int = 4
    timeout_s: int = 3600
    max_instances: int = 0  # 0 = shards

    def shards_config(self) -> ShardsConfig:
        return ShardsConfig(**self.model_dump(include=SHARDS_FIELDS))


SHARDS_FIELDS = frozenset(f.name for f in dataclasses.fields(ShardsConfig))
Functions = create_model("Functions", __base__=FunctionsDeployment, __doc__=FunctionsDeployment.__doc__,
                         **settings_fields(ShardsConfig))


class Gpu(Strict):
    """GPU training node(s): EC2 (cloud: aws) or GCE (cloud: gcp)."""

    instance_type: str = ""  # aws default p3.2xlarge; gcp default n1-standard-8 (machine type)
    accelerator_type: str = ""  # gcp only, e.g. nvidia-tesla-v100; aws implies it from instance_type
    accelerator_count: int = 0  # gcp only; 0 = 1
    nodes: int = 1  # >1 forms one torchrun job
    spot: bool = False
    checkpoint_every_s: int = 600
    root_volume_gb: int = 200
    external_ip: bool = False  # gcp: no external IP unless asked
    zone: str = ""  # gcp: default "<region>-a"
    image: str = ""  # override of the Deep Learning AMI SSM parameter / DLVM image family


class Cache(Strict):
    """Dataset-shard cache: EFS on AWS Lambda, local disk on VMs."""

    enabled: bool = False
    path: str = "/mnt/cache"
    max_gb: float = 0  # shards kept at most (least recently used evicted); 0: the cache filesystem's room


class Dataset(Strict):
    """Where raw text comes from (hybrid preprocessing), how it is prepared, and an existing bucket to use, if any.

    The preparation settings are those of `relaytrain data prepare` (relaytrain_runtime.contract.prepare holds
    their values and defaults); the hybrid pipeline's preprocessing applies them (relaytrain.worker)."""

    raw_prefix: str = "raw/"  # raw text objects in the bucket, for the hybrid preprocess fan-out
    bucket: str = ""  # existing bucket name; empty = the stack creates one
    format: Literal[prepare.FORMATS] | None = None  # None = detected from the keys
    field: str = ""  # the record field / column of the text; "" = text, messages, or prompt+response
    tokenizer: str = prepare.BPE  # bpe | pretrained (training.init_from's) | s3://BUCKET/RAW_PREFIX.../tokenizer.json
    vocab_size: int = 0  # a trained BPE's vocabulary; 0 = the model's
    val_fraction: float = prepare.DEFAULT_VAL_FRACTION


class Tracking(Strict):
    """Where the run's metrics stream is also logged: `tracking: {mlflow: URI}` (an MLflow tracking URI)."""

    mlflow: str = ""  # empty = no MLflow logging


class Alerts(Strict):
    """Who hears the stack's alarms (AWS SNS topic, GCP Cloud Monitoring alert policies): `alerts: {email: [..]}`."""

    email: list[str] = Field(default_factory=list)


class Blueprint(Strict):
    name: str
    description: str = ""
    cloud: Cloud
    region: str = ""  # aws default us-east-1; gcp default us-central1
    topology: Topology
    training: Training = Field(default_factory=Training)
    dataset: Dataset = Field(default_factory=Dataset)
    lambda_: Lambda | None = Field(default=None, alias="lambda")  # lambda-steps
    functions: Functions | None = None  # function-shards
    gpu: Gpu | None = None  # gpu-node, hybrid
    preprocess: Lambda | None = None  # hybrid
    evaluate: Lambda | None = None  # hybrid
    cache: Cache = Field(default_factory=Cache)
    image_uri: str = ""  # aws: the runtime image prebuilt in ECR (digest-pinned recommended); empty = built as an asset
    budget_usd: float | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    tracking: Tracking = Field(default_factory=Tracking)
    alerts: Alerts = Field(default_factory=Alerts)
