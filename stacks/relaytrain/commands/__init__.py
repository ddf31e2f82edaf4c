"""One module per kit verb: `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

from relaytrain_runtime import RelayError

GCP_START = {  # how a run starts on a GCP stack (docs/GCP.md)
    "function-shards": "`pulumi up`, then `gcloud workflows run $(pulumi stack output workflow)`",
    "gpu-node": "`pulumi up`: the nodes start training when they boot",
}


def aws_only(blueprint, verb: str, gcp_way: str) -> None:
    """Refuse an AWS-only verb on a GCP blueprint with the GCP way to do it, before any cloud call."""
    if blueprint.cloud == "aws":
        return
    start = GCP_START.get(blueprint.topology, "`pulumi up` (see docs/GCP.md)")
    if verb == "launch":
        way = f"start it with {start}, watch it with `{gcp_way}`"
    else:
        way = f"read its store with `{gcp_way}` ({start} deploys and starts it)"
    raise RelayError(f"relaytrain {verb} works on deployed AWS stacks only; {blueprint.name} is a {blueprint.cloud} "
                     f"blueprint: {way}")
