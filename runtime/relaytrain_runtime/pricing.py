"""Prices the runtime accrues and the planner (kit side) plans with. One table, torch-free.

As of 2026-11 (us-east-1 / us-central1, on-demand unless named spot). Sources (listed with
each number in docs/CLOUD.md, "Prices"): AWS and Google pricing pages (Lambda GB-s [2nd, consistent
across sources], Cloud Functions 2nd gen / Cloud Run Tier 1 [doc + 2nd]) and SkyPilot's public
catalog `catalogs/v7/{aws,gcp}/vms.csv` for instance hours [catalog]. Re-check before relying
on a number: prices change, and spot prices move hourly.
"""

from __future__ import annotations

AS_OF = "2026-11"
GiB_PER_MB = 1 / 1024  # Lambda bills memory in MB as GB = MB/1024

# AWS Lambda, us-east-1, per GB-second of configured memory, and per request.
LAMBDA_GB_S_USD = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_REQUEST_USD = 0.20 / 1_000_000
# AWS Step Functions Standard, per state transition (retries count).
SFN_TRANSITION_USD = 0.025 / 1000

# Google Cloud Functions 2nd gen (Cloud Run), Tier 1, per vCPU-second and GiB-second.
GCF_VCPU_S_USD = {"request": 0.000024, "instance": 0.000018}
GCF_GIB_S_USD = {"request": 0.0000025, "instance": 0.000002}
GCF_REQUEST_USD = 0.40 / 1_000_000

# GPU instances, USD per hour: on-demand, and a sampled spot price (the catalog's upper end).
INSTANCE_HOURLY_USD = {
    # AWS
    "p3.2xlarge": {"on_demand": 3.06, "spot": 1.01, "gpus": 1, "gpu": "V100-16GB"},
    "p3.8xlarge": {"on_demand": 12.24, "spot": 4.3, "gpus": 4, "gpu": "V100-16GB"},
    "g4dn.xlarge": {"on_demand": 0.526, "spot": 0.20, "gpus": 1, "gpu": "T4-16GB"},
    "g5.xlarge": {"on_demand": 1.006, "spot": 0.42, "gpus": 1, "gpu": "A10G-24GB"},
    "g5.12xlarge": {"on_demand": 5.672, "spot": 2.7, "gpus": 4, "gpu": "A10G-24GB"},
    "p4d.24xlarge": {"on_demand": 32.77, "spot": 11.4, "gpus": 8, "gpu": "A100-40GB"},
    # [unverified]: not in shared/PLATFORM_FACTS.md (no source reachable in this session); list prices as
    # remembered for us-east-1, spot as ~40 % of on-demand. Re-check before relying on them (docs/GPU.md).
    "g6.xlarge": {"on_demand": 0.805, "spot": 0.32, "gpus": 1, "gpu": "L4-24GB", "unverified": True},
    "g6.12xlarge": {"on_demand": 4.602, "spot": 1.84, "gpus": 4, "gpu": "L4-24GB", "unverified": True},
    "g6.48xlarge": {"on_demand": 13.35, "spot": 5.34, "gpus": 8, "gpu": "L4-24GB", "unverified": True},
    "g6e.xlarge": {"on_demand": 1.861, "spot": 0.74, "gpus": 1, "gpu": "L40S-48GB", "unverified": True},
    "g6e.12xlarge": {"on_demand": 10.49, "spot": 4.20, "gpus": 4, "gpu": "L40S-48GB", "unverified": True},
    "g6e.48xlarge": {"on_demand": 30.13, "spot": 12.05, "gpus": 8, "gpu": "L40S-48GB", "unverified": True},
    "p4de.24xlarge": {"on_demand": 40.97, "spot": 16.4, "gpus": 8, "gpu": "A100-80GB", "unverified": True},
    "p5.48xlarge": {"on_demand": 55.04, "spot": 22.0, "gpus": 8, "gpu": "H100-80GB", "unverified": True},
    "p5e.48xlarge": {"on_demand": 63.0, "spot": 25.2, "gpus": 8, "gpu": "H200-141GB", "unverified": True},
    # GCP: GPU part plus VM part where the catalog splits them
    "g2-standard-4+L4": {"on_demand": 0.560, "spot": 0.223, "gpus": 1, "gpu": "L4-24GB", "note": "GPU part only"},
    "a2-highgpu-1g": {"on_demand": 0.739, "spot": 0.296, "gpus": 1, "gpu": "A100-40GB", "note": "VM part only"},
}


def lambda_cost_per_second(memory_mb: int, arch: str = "x86_64") -> float:
    """What one running Lambda costs per second at `memory_mb` configured memory."""
    if arch not in LAMBDA_GB_S_USD:
        raise ValueError(f"Lambda architecture {arch!r}: expected one of {sorted(LAMBDA_GB_S_USD)}")
    return memory_mb * GiB_PER_MB * LAMBDA_GB_S_USD[arch]


def gcf_cost_per_second(vcpu: float, memory_gib: float, billing: str = "request") -> float:
    """What one busy Cloud Functions (2nd gen) instance costs per second."""
    if billing not in GCF_VCPU_S_USD:
        raise ValueError(f"Cloud Functions billing {billing!r}: expected one of {sorted(GCF_VCPU_S_USD)}")
    return vcpu * GCF_VCPU_S_USD[billing] + memory_gib * GCF_GIB_S_USD[billing]


def instance_cost_per_second(instance_type: str, spot: bool = False, count: int = 1) -> float:
    """What `count` GPU instances cost per second (0.0 for an instance type not in the table)."""
    row = INSTANCE_HOURLY_USD.get(instance_type)
    if row is None:
        return 0.0
    return count * row["spot" if spot else "on_demand"] / 3600.0
