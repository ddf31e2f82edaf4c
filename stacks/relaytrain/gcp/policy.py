"""Policy rules over a planned resource graph: pure functions of (type, name, inputs).

Inputs are in Pulumi's wire format (camelCase keys), which is what both the mocks
(`relaytrain.gcp.mocks`) and a `pulumi-policy` pack (`stacks/policy/`) see, so the tests and the
pack users run with `pulumi preview --policy-pack stacks/policy` enforce the same rules.
Each rule returns a list of violation messages (empty = compliant).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
GPU_MACHINE_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")
COST_LABELS = ("relaytrain-blueprint", "relaytrain-component")
BUCKET = "gcp:storage/bucket:Bucket"
INSTANCE = "gcp:compute/instance:Instance"
FUNCTION = "gcp:cloudfunctionsv2/function:Function"
RUN_AS = {  # where each resource type names the identity it runs as
    INSTANCE: lambda i: [(i.get("serviceAccount") or {}).get("email")],
    FUNCTION: lambda i: [(i.get("serviceConfig") or {}).get("serviceAccountEmail"),
                         (i.get("buildConfig") or {}).get("serviceAccount")],
    "gcp:workflows/workflow:Workflow": lambda i: [i.get("serviceAccount")],
}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def no_public_members(typ: str, name: str, inputs: dict) -> list[str]:
    found = sorted({m for s in _strings(inputs) for m in PUBLIC_MEMBERS if m in s})
    return [f"{name}: grants access to {m}" for m in found]


def bucket_locked_down(typ: str, name: str, inputs: dict) -> list[str]:
    if typ != BUCKET:
        return []
    out = []
    if inputs.get("uniformBucketLevelAccess") is not True:
        out.append(f"{name}: uniformBucketLevelAccess must be true")
    if inputs.get("publicAccessPrevention") != "enforced":
        out.append(f"{name}: publicAccessPrevention must be 'enforced'")
    return out


def not_default_compute_sa(typ: str, name: str, inputs: dict) -> list[str]:
    if typ not in RUN_AS:
        return []
    emails = RUN_AS[typ](inputs)
    if typ != FUNCTION and not emails[0]:
        return [f"{name}: no service account set, so it runs as the default compute service account"]
    if typ == FUNCTION and not emails[0]:
        return [f"{name}: serviceConfig.serviceAccountEmail not set (the default compute service account)"]
    if typ == FUNCTION and not emails[1]:
        return [f"{name}: buildConfig.serviceAccount not set (builds run as the default compute service account)"]
    bad = [e.rsplit("/", 1)[-1] for e in emails if e and e.endswith("-compute@developer.gserviceaccount.com")]
    return [f"{name}: runs as the default compute service account {e}" for e in bad]


def is_gpu_instance(typ: str, inputs: dict) -> bool:
    """Attached GPUs, or an accelerator-optimized machine type that comes with them."""
    machine = str(inputs.get("machineType") or "").rsplit("/", 1)[-1]
    return typ == INSTANCE and bool(inputs.get("guestAccelerators") or machine.startswith(GPU_MACHINE_FAMILIES))


def gpu_instance_rules(typ: str, name: str, inputs: dict) -> list[str]:
    if not is_gpu_instance(typ, inputs):
        return []
    out = []
    if (inputs.get("scheduling") or {}).get("onHostMaintenance") != "TERMINATE":
        out.append(f"{name}: GPU instances need scheduling.onHostMaintenance 'TERMINATE'")
    missing = [k for k in COST_LABELS if not (inputs.get("labels") or {}).get(k)]
    if missing:
        out.append(f"{name}: missing cost labels {', '.join(missing)}")
    return out


def function_internal_ingress(typ: str, name: str, inputs: dict) -> list[str]:
    if typ != FUNCTION:
        return []
    ingress = (inputs.get("serviceConfig") or {}).get("ingressSettings")
    return (
        []
        if ingress == "ALLOW_INTERNAL_ONLY"
        else [f"{name}: ingressSettings must be ALLOW_INTERNAL_ONLY, got {ingress!r}"]
    )


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[str, str, dict], list[str]]


RULES = (
    Rule("relaytrain-no-public-members", "No IAM binding grants allUsers or allAuthenticatedUsers.", no_public_members),
    Rule("relaytrain-bucket-locked-down", "Buckets use uniform access and enforce public access prevention.",
         bucket_locked_down),
    Rule("relaytrain-no-default-compute-sa", "Nothing runs as the default compute service account.",
         not_default_compute_sa),
    Rule("relaytrain-gpu-instance", "GPU instances use TERMINATE on host maintenance and carry cost labels.",
         gpu_instance_rules),
    Rule("relaytrain-function-internal-ingress", "Functions accept internal traffic only.", function_internal_ingress),
)


def violations(resources) -> list[str]:
    """Every violation in a graph of objects with `.type`, `.name`, `.inputs`, as 'rule: message'."""
    return [f"{rule.name}: {msg}" for r in resources for rule in RULES
            for msg in rule.check(r.type, r.name, json.loads(json.dumps(r.inputs)))]
