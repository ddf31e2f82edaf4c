"""Names shared by the CDK stacks and the light verbs (launch, status): no aws_cdk import here.

The run and dataset prefixes inside a bucket are the kit's, for every cloud: relaytrain.worker.
"""

from __future__ import annotations

import re


def stack_name(blueprint) -> str:
    """CloudFormation stack name of a blueprint: `relaytrain-NAME` with only [A-Za-z0-9-]."""
    return "relaytrain-" + re.sub(r"[^A-Za-z0-9-]+", "-", blueprint.name).strip("-")
