"""Platform limits and offerings the validator enforces, as of 2026-11.

Every number here is listed with its source and date in docs/LIMITS.md: [doc] the provider's
documentation; [cfn-lint] the EC2 instance-type-per-region data shipped with cfn-lint 1.58 (from the
AWS price list); [doc-gpu] Google's "GPU regions and zones" page. Re-check before relying on an offering.
"""

from __future__ import annotations

from dataclasses import dataclass

AS_OF = "2026-11"

# AWS Lambda [doc]
LAMBDA_MEMORY_MB = (128, 10_240)
LAMBDA_TIMEOUT_S = (1, 900)
LAMBDA_EPHEMERAL_MB = (512, 10_240)
LAMBDA_IMAGE_MB = 10_240  # container image, all layers, uncompressed: 10 GB
LAMBDA_MB_PER_VCPU = 1_769  # 1,769 MB buys one vCPU of CPU share
LAMBDA_MAX_VCPU = 6
LAMBDA_CONCURRENCY = 1_000  # default per-region account limit

# AWS Step Functions, Standard workflows [doc]
SFN_HISTORY_EVENTS = 25_000

# Google Cloud Functions 2nd gen (Cloud Run) [doc]
GCF_MAX_MEMORY_GIB = 32
GCF_HTTP_TIMEOUT_S = 3_600
# vCPU -> (min GiB, max GiB) that may be paired with it
GCF_VCPU_MEMORY_GIB = {1: (0.125, 4), 2: (0.125, 8), 4: (2, 16), 6: (4, 24), 8: (4, 32)}
GCF_MAX_INSTANCES = 100  # default per-function instance ceiling for 2nd gen
SHARDS = (1, GCF_MAX_INSTANCES)

REGIONS = {
    "aws": ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1", "eu-west-1",
            "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "ap-east-1",
            "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
            "ap-southeast-2", "ap-southeast-3", "me-south-1", "me-central-1", "il-central-1", "af-south-1"),
    "gcp": ("us-central1", "us-east1", "us-east4", "us-west1", "us-west4", "europe-west1", "europe-west4",
            "asia-east1", "asia-northeast1", "asia-southeast1"),
}
DEFAULT_REGION = {"aws": "us-east-1", "gcp": "us-central1"}
DEFAULT_INSTANCE = {"aws": "p3.2xlarge", "gcp": "n1-standard-8"}
DEFAULT_GCP_ACCELERATOR = "nvidia-tesla-v100"  # attached to n1 machine types unless the blueprint names one
# the node image unless gpu.image names one: the Deep Learning AMI's SSM parameter / the DLVM image family
DEFAULT_IMAGE = {
    "aws": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    "gcp": "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570",
}


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_gib: float
    gcp_name: str = ""  # the accelerator type on GCE


GPUS = {
    "V100": GpuModel("V100", 16, "nvidia-tesla-v100"),
    "T4": GpuModel("T4", 16, "nvidia-tesla-t4"),
    "A10G": GpuModel("A10G", 24),
    "L4": GpuModel("L4", 24, "nvidia-l4"),
    "A100": GpuModel("A100", 40, "nvidia-tesla-a100"),
    "A100-80GB": GpuModel("A100-80GB", 80, "nvidia-a100-80gb"),
    "L40S": GpuModel("L40S", 48),
    "H100": GpuModel("H100", 80, "nvidia-h100-80gb"),
    "H200": GpuModel("H200", 141),
}
GPU_BY_GCP_NAME = {g.gcp_name: g for g in GPUS.values() if g.gcp_name}


@dataclass(frozen=True)
class Instance:
    name: str
    vcpu: int
    memory_gib: float
    gpu: str  # key of GPUS; "" when the GPU is attached separately (GCE n1)
    gpus: int
    regions: tuple[str, ...]


_P3 = ("us-east-1", "us-east-2", "us-west-2", "ca-central-1", "eu-central-1", "eu-west-1", "eu-west-2",
       "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2")  # [cfn-lint]
_G4DN = REGIONS["aws"]  # offered in every commercial region listed [cfn-lint]
_G5 = ("us-east-1", "us-east-2", "us-west-2", "ca-central-1", "sa-east-1", "eu-central-1", "eu-north-1",
       "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "ap-east-1", "ap-south-1", "ap-northeast-1",
       "ap-northeast-2", "ap-southeast-2", "ap-southeast-3", "il-central-1", "me-central-1")  # [cfn-lint]
_P4D = ("us-east-1", "us-east-2", "us-west-2", "ca-central-1", "sa-east-1", "eu-central-1", "eu-north-1",
        "eu-west-1", "eu-west-2", "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1",
        "ap-southeast-2")  # [cfn-lint]

_CURRENT = ("us-east-1", "us-east-2", "us-west-2")  # [unverified]

AWS_INSTANCES = {i.name: i for i in (
    Instance("p3.2xlarge", 8, 61, "V100", 1, _P3),
    Instance("p3.8xlarge", 32, 244, "V100", 4, _P3),
    Instance("g4dn.xlarge", 4, 16, "T4", 1, _G4DN),
    Instance("g5.xlarge", 4, 16, "A10G", 1, _G5),
    Instance("g5.12xlarge", 48, 192, "A10G", 4, _G5),
    Instance("p4d.24xlarge", 96, 1152, "A100", 8, _P4D),
    # current generation [unverified: no source in shared/PLATFORM_FACTS.md; sizes from AWS's instance pages as
    # remembered, regions conservatively us-east-1/us-east-2/us-west-2]
    Instance("g6.xlarge", 4, 16, "L4", 1, _CURRENT),
    Instance("g6.12xlarge", 48, 192, "L4", 4, _CURRENT),
    Instance("g6.48xlarge", 192, 768, "L4", 8, _CURRENT),
    Instance("g6e.xlarge", 4, 32, "L40S", 1, _CURRENT),
    Instance("g6e.12xlarge", 48, 384, "L40S", 4, _CURRENT),
    Instance("g6e.48xlarge", 192, 1536, "L40S", 8, _CURRENT),
    Instance("p4de.24xlarge", 96, 1152, "A100-80GB", 8, _CURRENT),
    Instance("p5.48xlarge", 192, 2048, "H100", 8, _CURRENT),
    Instance("p5e.48xlarge", 192, 2048, "H200", 8, _CURRENT),
)}

# GCE: n1 machine types take attached V100/T4; a2 and g2 types come with their GPUs. Regions: [doc-gpu]
_N1_GPU_REGIONS = ("us-central1", "us-east1", "us-west1", "europe-west4", "asia-east1")
GCP_INSTANCES = {i.name: i for i in (
    Instance("n1-standard-4", 4, 15, "", 0, REGIONS["gcp"]),
    Instance("n1-standard-8", 8, 30, "", 0, REGIONS["gcp"]),
    Instance("n1-standard-16", 16, 60, "", 0, REGIONS["gcp"]),
    Instance("n1-standard-32", 32, 120, "", 0, REGIONS["gcp"]),
    Instance("g2-standard-8", 8, 32, "L4", 1, ("us-central1", "us-east1", "us-east4", "us-west1", "us-west4",
                                               "europe-west1", "europe-west4", "asia-east1", "asia-northeast1",
                                               "asia-southeast1")),
    Instance("a2-highgpu-1g", 12, 85, "A100", 1, ("us-central1", "us-east1", "us-west1", "europe-west4",
                                                   "asia-northeast1", "asia-southeast1")),
    Instance("a2-highgpu-4g", 48, 340, "A100", 4, ("us-central1", "us-east1", "us-west1", "europe-west4",
                                                    "asia-northeast1", "asia-southeast1")),
    # [unverified: not in shared/PLATFORM_FACTS.md] more GPUs per VM; regions conservatively us-central1 and one more
    Instance("g2-standard-48", 48, 192, "L4", 4, ("us-central1", "us-east4")),
    Instance("a2-highgpu-8g", 96, 680, "A100", 8, ("us-central1", "us-east1")),
    Instance("a2-ultragpu-1g", 12, 170, "A100-80GB", 1, ("us-central1", "us-east4")),
    Instance("a3-highgpu-8g", 208, 1872, "H100", 8, ("us-central1", "us-east4")),
)}
# attached GPUs on n1: accelerator -> (allowed counts, regions, max vCPU per GPU) [doc-gpu]
GCP_ATTACHED = {
    "nvidia-tesla-v100": ((1, 2, 4, 8), ("us-central1", "us-west1", "us-east1", "europe-west4", "asia-east1"), 12),
    "nvidia-tesla-t4": ((1, 2, 4), _N1_GPU_REGIONS + ("us-west4", "europe-west1", "asia-northeast1",
                                                     "asia-southeast1"), 24),
}
DEFAULT_GCP_ZONE_SUFFIX = {"us-east1": "c"}  # us-east1 has no zone "a"


def instances(cloud: str) -> dict[str, Instance]:
    return AWS_INSTANCES if cloud == "aws" else GCP_INSTANCES


def gpu_of(cloud: str, instance_type: str, accelerator_type: str = "",
           accelerator_count: int = 0) -> tuple[GpuModel | None, int]:
    """The GPU model and count a node gets (None, 0 when unknown or none)."""
    inst = instances(cloud).get(instance_type)
    if inst is None:
        return None, 0
    if inst.gpu:
        return GPUS[inst.gpu], inst.gpus
    gpu = GPU_BY_GCP_NAME.get(accelerator_type)
    return gpu, (accelerator_count or 1) if gpu else 0
