"""Unit prices the planner uses, one table with the date and a source per line.

Sources: [doc] provider documentation, [catalog] SkyPilot's public price catalog, [2nd] secondary
sources consistent with each other, as collected in shared/PLATFORM_FACTS.md (us-east-1 /
us-central1, Linux, on-demand unless marked spot). Prices change: re-check before relying on one.
Spot prices are the midpoint of the sampled range.
"""

from __future__ import annotations

from dataclasses import dataclass

AS_OF = "2026-11"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


PRICES: dict[str, Price] = {
    # AWS serverless
    "lambda.gb_s.x86_64": Price(0.0000166667, "GB-s", "[2nd] AWS Lambda pricing, us-east-1"),
    "lambda.gb_s.arm64": Price(0.0000133334, "GB-s", "[2nd] AWS Lambda pricing, us-east-1"),
    "lambda.request": Price(0.20 / 1e6, "request", "[2nd] AWS Lambda pricing"),
    "sfn.transition": Price(0.025 / 1e3, "state transition", "[doc] Step Functions Standard"),
    # GCP serverless (Cloud Functions 2nd gen, request-based billing, Tier 1)
    "gcf.vcpu_s": Price(0.000024, "vCPU-s", "[doc+2nd] Cloud Run functions, request-based, Tier 1"),
    "gcf.gib_s": Price(0.0000025, "GiB-s", "[doc+2nd] Cloud Run functions, request-based, Tier 1"),
    "gcf.request": Price(0.40 / 1e6, "request", "[doc+2nd] Cloud Run functions"),
    "workflows.step": Price(0.01 / 1e3, "step", "[2nd] Cloud Workflows internal steps"),
    # storage
    "s3.gb_month": Price(0.023, "GB-month", "[2nd] S3 Standard, us-east-1"),
    "s3.put": Price(0.005 / 1e3, "PUT/LIST", "[2nd] S3 Standard requests"),
    "s3.get": Price(0.0004 / 1e3, "GET", "[2nd] S3 Standard requests"),
    "gcs.gb_month": Price(0.020, "GB-month", "[2nd] GCS Standard, us-central1"),
    "gcs.class_a": Price(0.005 / 1e3, "class A op", "[2nd] GCS Standard operations"),
    "gcs.class_b": Price(0.0004 / 1e3, "class B op", "[2nd] GCS Standard operations"),
    "efs.gb_month": Price(0.30, "GB-month", "[2nd] EFS Standard, us-east-1"),
    "efs.read_gb": Price(0.03, "GB read", "[2nd] EFS Elastic throughput"),
    "ebs.gb_month": Price(0.08, "GB-month", "[2nd] EBS gp3"),
    "pd.gb_month": Price(0.10, "GB-month", "[2nd] Persistent Disk balanced"),
    "transfer.in_region_gb": Price(0.0, "GB", "[doc] S3/GCS to compute in the same region is free"),
    # EC2 (instance hours) [catalog]; spot: midpoint of the sampled range
    "ec2.p3.2xlarge": Price(3.06, "hour", "[catalog] and the seed paper"),
    "ec2.p3.2xlarge.spot": Price(0.685, "hour", "[catalog] sampled 0.36-1.01"),
    "ec2.p3.8xlarge": Price(12.24, "hour", "[catalog]"),
    "ec2.p3.8xlarge.spot": Price(2.75, "hour", "[catalog] sampled 1.2-4.3"),
    "ec2.g4dn.xlarge": Price(0.526, "hour", "[catalog]"),
    "ec2.g4dn.xlarge.spot": Price(0.19, "hour", "[catalog] sampled 0.18-0.20"),
    "ec2.g5.xlarge": Price(1.006, "hour", "[catalog]"),
    "ec2.g5.xlarge.spot": Price(0.39, "hour", "[catalog] sampled 0.36-0.42"),
    "ec2.g5.12xlarge": Price(5.672, "hour", "[catalog]"),
    "ec2.g5.12xlarge.spot": Price(2.25, "hour", "[catalog] sampled 1.8-2.7"),
    "ec2.p4d.24xlarge": Price(32.77, "hour", "[catalog]; AWS announced cuts of up to ~45 % in 2025"),
    "ec2.p4d.24xlarge.spot": Price(8.25, "hour", "[catalog] sampled 5.1-11.4"),
    # GCE (VM hours; n1 GPUs are priced per attached GPU)
    "gce.n1-standard-4": Price(0.19, "hour", "[2nd] us-central1"),
    "gce.n1-standard-4.spot": Price(0.04, "hour", "[2nd] us-central1"),
    "gce.n1-standard-8": Price(0.38, "hour", "[2nd] us-central1"),
    "gce.n1-standard-8.spot": Price(0.08, "hour", "[2nd] us-central1"),
    "gce.n1-standard-16": Price(0.76, "hour", "[2nd] us-central1"),
    "gce.n1-standard-16.spot": Price(0.16, "hour", "[2nd] us-central1"),
    "gce.n1-standard-32": Price(1.52, "hour", "[2nd] us-central1"),
    "gce.n1-standard-32.spot": Price(0.32, "hour", "[2nd] us-central1"),
    "gce.nvidia-tesla-v100": Price(2.48, "GPU-hour", "[2nd] us-central1"),
    "gce.nvidia-tesla-v100.spot": Price(0.74, "GPU-hour", "[2nd] us-central1"),
    "gce.nvidia-tesla-t4": Price(0.35, "GPU-hour", "[2nd] us-central1"),
    "gce.nvidia-tesla-t4.spot": Price(0.11, "GPU-hour", "[2nd] us-central1"),
    "gce.g2-standard-8": Price(0.85, "hour", "[catalog] L4 0.560 + the g2 VM"),
    "gce.g2-standard-8.spot": Price(0.34, "hour", "[catalog] L4 spot 0.223 + the g2 VM spot"),
    "gce.a2-highgpu-1g": Price(3.67, "hour", "[catalog] VM 0.739 + A100 2.934"),
    "gce.a2-highgpu-1g.spot": Price(1.47, "hour", "[catalog] VM spot 0.296 + A100 spot"),
    "gce.a2-highgpu-4g": Price(14.69, "hour", "[catalog] 4x the 1g"),
    "gce.a2-highgpu-4g.spot": Price(5.87, "hour", "[catalog] 4x the 1g"),
}


def price(key: str) -> Price:
    try:
        return PRICES[key]
    except KeyError:
        raise KeyError(f"no price for {key!r} in relaytrain.prices (as of {AS_OF})") from None
