"""Unit prices the planner uses, one table with the date and a source per line.

Lambda, Step Functions, Cloud Functions and EC2 come from the runtime's table
(`relaytrain_runtime.pricing`, which the workers use to accrue cost), so each number lives in one
place; storage, Workflows, disks and GCE are added here. Sources: [doc] provider documentation,
[catalog] SkyPilot's public price catalog, [2nd] secondary sources consistent with each other, each
listed with its date in docs/LIMITS.md (us-east-1 / us-central1, Linux, on-demand unless marked
spot). Prices change: re-check before relying on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaytrain_runtime import pricing as rt

AS_OF = rt.AS_OF


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


_RT = "relaytrain_runtime.pricing"


def _from_runtime() -> dict[str, Price]:
    """The lines the runtime's table already has (the runtime accrues cost with the same numbers)."""
    out = {
        "lambda.gb_s.x86_64": Price(rt.LAMBDA_GB_S_USD["x86_64"], "GB-s", f"[2nd] AWS Lambda us-east-1 ({_RT})"),
        "lambda.gb_s.arm64": Price(rt.LAMBDA_GB_S_USD["arm64"], "GB-s", f"[2nd] AWS Lambda us-east-1 ({_RT})"),
        "lambda.request": Price(rt.LAMBDA_REQUEST_USD, "request", f"[2nd] AWS Lambda ({_RT})"),
        "sfn.transition": Price(rt.SFN_TRANSITION_USD, "state transition", f"[doc] Step Functions Standard ({_RT})"),
        "gcf.vcpu_s": Price(rt.GCF_VCPU_S_USD["request"], "vCPU-s", f"[doc+2nd] Cloud Run functions Tier 1 ({_RT})"),
        "gcf.gib_s": Price(rt.GCF_GIB_S_USD["request"], "GiB-s", f"[doc+2nd] Cloud Run functions Tier 1 ({_RT})"),
        "gcf.request": Price(rt.GCF_REQUEST_USD, "request", f"[doc+2nd] Cloud Run functions ({_RT})"),
    }
    for name, row in rt.INSTANCE_HOURLY_USD.items():
        if "." in name:  # EC2 instance types; the GCP rows there are parts of a price, see GCE below
            kind = "[unverified]" if row.get("unverified") else "[catalog]"
            out[f"ec2.{name}"] = Price(row["on_demand"], "hour", f"{kind} on-demand ({_RT})")
            out[f"ec2.{name}.spot"] = Price(row["spot"], "hour", f"{kind} spot, sampled upper end ({_RT})")
    return out


PRICES: dict[str, Price] = {
    **_from_runtime(),
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
    "gce.g2-standard-8": Price(0.85, "hour", "[catalog+2nd] L4 0.560 [catalog] + the g2 VM [2nd]"),
    "gce.g2-standard-8.spot": Price(0.34, "hour", "[catalog+2nd] L4 spot 0.223 [catalog] + the g2 VM spot [2nd]"),
    "gce.a2-highgpu-1g": Price(3.67, "hour", "[catalog+2nd] VM 0.739 [catalog] + A100 2.934 [2nd]"),
    "gce.a2-highgpu-1g.spot": Price(1.47, "hour", "[catalog+2nd] VM spot 0.296 [catalog] + A100 spot [2nd]"),
    "gce.a2-highgpu-4g": Price(14.69, "hour", "[catalog+2nd] 4x the 1g"),
    "gce.a2-highgpu-4g.spot": Price(5.87, "hour", "[catalog+2nd] 4x the 1g"),
    # [unverified]: not in shared/PLATFORM_FACTS.md; us-central1 list prices as remembered, spot ~40 %
    "gce.g2-standard-48": Price(4.00, "hour", "[unverified] 4x L4 + the g2 VM"),
    "gce.g2-standard-48.spot": Price(1.60, "hour", "[unverified] ~40 % of on-demand"),
    "gce.a2-highgpu-8g": Price(29.39, "hour", "[unverified] 8x the 1g"),
    "gce.a2-highgpu-8g.spot": Price(11.74, "hour", "[unverified] 8x the 1g spot"),
    "gce.a2-ultragpu-1g": Price(5.07, "hour", "[unverified] A100 80GB + VM"),
    "gce.a2-ultragpu-1g.spot": Price(2.03, "hour", "[unverified] ~40 % of on-demand"),
    "gce.a3-highgpu-8g": Price(88.49, "hour", "[unverified] 8x H100 80GB + VM"),
    "gce.a3-highgpu-8g.spot": Price(35.40, "hour", "[unverified] ~40 % of on-demand"),
}


def price(key: str) -> Price:
    try:
        return PRICES[key]
    except KeyError:
        raise KeyError(f"no price for {key!r} in relaytrain.prices (as of {AS_OF})") from None
