"""What `pulumi up` runs (stacks/Pulumi.yaml `main`): read the stack config, build the blueprint.

    pulumi config set blueprint blueprints/gcp-shards.yaml
    pulumi config set gcp:project my-project
    pulumi config set gcp:region us-central1
"""

import pathlib
import sys

STACKS = pathlib.Path(__file__).resolve().parents[2]
if str(STACKS) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(STACKS))

import pulumi  # noqa: E402

from relaytrain.blueprint import load  # noqa: E402
from relaytrain.gcp.program import GcpConfig, build, export  # noqa: E402

config = pulumi.Config()
gcp_config = pulumi.Config("gcp")
path = pathlib.Path(config.require("blueprint"))
if not path.is_absolute():
    path = STACKS.parent / path  # blueprint paths are relative to the repository root
blueprint = load(path, deployed=True)
export(build(blueprint, GcpConfig(project=gcp_config.get("project") or "", region=gcp_config.get("region") or "",
                                  force_destroy=config.get_bool("forceDestroy") or False,
                                  billing_account=config.get("billingAccount") or "")))
