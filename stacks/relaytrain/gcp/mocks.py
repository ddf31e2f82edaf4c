"""Run the Pulumi program without the Pulumi CLI or credentials, recording every resource.

Pulumi's unit-test mocks (`pulumi.runtime.set_mocks`) stand in for the engine. `RecordingMocks`
records each resource's type, name, inputs (wire format: camelCase keys) and URN, and returns
the computed outputs the program reads (service account `email`, function `serviceConfig.uri`, auto-named
bucket `name`, a node's `networkIp`) so nothing resolves to None. `run_program` runs one
program and returns its normalised resource graph: the review plan and the test snapshots.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

PROJECT = "relaytrain-review"  # stand-in project id: nothing account-specific in plans


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict
    urn: str = ""

    @property
    def parent_type(self) -> str:
        """The type of the component this resource is parented to ('' at the top)."""
        qualified = self.urn.split("::")[2] if self.urn else self.type
        return qualified.split("$")[-2] if "$" in qualified else ""

    def to_json(self) -> dict:
        return {"type": self.type, "name": self.name, "parent": self.parent_type, "inputs": self.inputs}


def normalise(value: Any) -> Any:
    """Stable, JSON-ready values: sorted maps, assets by file name and content hash, integral floats as ints."""
    if isinstance(value, pulumi.FileAsset):
        path = pathlib.Path(value.path)
        return {"asset": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if isinstance(value, pulumi.StringAsset):
        return {"asset": "string", "sha256": hashlib.sha256(value.text.encode()).hexdigest()}
    if isinstance(value, dict):
        return {k: normalise(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def computed_outputs(typ: str, name: str, inputs: dict) -> dict:
    """The outputs GCP computes that the program reads, faked deterministically per type."""
    out = dict(inputs)
    if typ == "gcp:serviceaccount/account:Account":
        out["email"] = f"{inputs['accountId']}@{PROJECT}.iam.gserviceaccount.com"
    elif typ == "gcp:storage/bucket:Bucket":
        out.setdefault("name", f"{name}-0000000")
        out["url"] = f"gs://{out['name']}"
    elif typ == "gcp:cloudfunctionsv2/function:Function":
        fn = inputs.get("name", name)
        out["url"] = f"https://{inputs.get('location', 'region')}-{PROJECT}.cloudfunctions.net/{fn}"
        out["serviceConfig"] = {**inputs.get("serviceConfig", {}), "uri": f"https://{fn}-mock.a.run.app"}
    elif typ == "gcp:compute/instance:Instance":
        out.setdefault("name", name)
        nics = [dict(n) for n in inputs.get("networkInterfaces", [])]
        for i, nic in enumerate(nics):
            nic["networkIp"] = f"10.20.0.{10 + i}"
        out["networkInterfaces"] = nics
    elif typ == "gcp:monitoring/notificationChannel:NotificationChannel":
        out["name"] = f"projects/{PROJECT}/notificationChannels/{name}"
    elif typ in ("gcp:compute/network:Network", "gcp:compute/subnetwork:Subnetwork", "gcp:compute/router:Router"):
        out.setdefault("name", name)
    out.setdefault("name", inputs.get("name", name))
    return out


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(Recorded(args.typ, args.name, normalise(args.inputs)))
        return f"{args.name}-id", computed_outputs(args.typ, args.name, args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None


def run_program(program: Callable[[], Any], *, stack: str = "review") -> list[Recorded]:
    """Run PROGRAM under fresh mocks; return every resource (components included), sorted."""
    mocks = RecordingMocks()
    monitor = pulumi.runtime.mocks.MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="relaytrain", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.test(program)()
    urns = {urn.rsplit("::", 1)[-1] + "|" + urn.split("::")[2].split("$")[-1]: urn
            for urn in monitor.get_registered_resources()}
    for r in mocks.resources:
        r.urn = urns.get(f"{r.name}|{r.type}", "")
    return sorted(mocks.resources, key=lambda r: (r.type, r.name))
