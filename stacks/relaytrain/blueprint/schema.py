"""The blueprint schema: one typed, strict model for every topology.

A blueprint is one YAML file read by the CDK app, the Pulumi program, the planner and the local
runner. Field names here are the contract between those parts: rename nothing without updating
all of them. Platform limits, feasibility and error formatting are layered on in
`relaytrain.blueprint.validate` / `relaytrain.blueprint.load`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relaytrain_runtime.spec import RunSpec

Cloud = Literal["aws", "gcp"]
Topology = Literal["lambda-steps", "function-shards", "gpu-node", "hybrid"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Training(Strict):
    """The run spec (`relaytrain_runtime.spec.RunSpec`), field for field."""

    preset: str = "tiny-gpt"
    steps: int = 200
    seed: int = 0
    batch_size: int = 16
    seq_len: int = 0
    micro_batch_size: int = 0
    dataset: str = "stdlib"
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    mlm_probability: float = 0.15
    keep_last: int = 3
    eval_batches: int = 8
    sampling: Literal["epochs", "replacement"] = "epochs"

    def run_spec(self) -> RunSpec:
        return RunSpec(**self.model_dump())


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


class Functions(Strict):
    """Google Cloud Functions (2nd gen) data-parallel shards orchestrated by Cloud Workflows."""

    shards: int = 4
    memory_gib: float = 16
    vcpu: int = 4
    timeout_s: int = 3600
    max_instances: int = 0  # 0 = shards
    sync: Literal["gradients", "diloco"] = "gradients"
    local_steps: int = 8  # diloco: inner steps H per round
    exchange_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    outer_lr: float = 0.7  # diloco outer Nesterov step
    outer_momentum: float = 0.9
    round_deadline_s: int = 0  # 0 = timeout_s; stragglers past it are retried


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


class Dataset(Strict):
    """Where raw text comes from (hybrid preprocessing) and an existing bucket to use, if any."""

    raw_prefix: str = "raw/"  # raw text objects in the bucket, for the hybrid preprocess fan-out
    bucket: str = ""  # existing bucket name; empty = the stack creates one


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
    budget_usd: float | None = None
    tags: dict[str, str] = Field(default_factory=dict)
