"""Names shared by the CDK stacks and the light verbs (launch, status): no aws_cdk import here."""

from __future__ import annotations

import re

RUN_PREFIX = "runs/"  # every run's store is s3://BUCKET/runs/NAME
DATA_PREFIX = "data/"  # prepared datasets shared by runs


def stack_name(blueprint) -> str:
    """CloudFormation stack name of a blueprint: `relaytrain-NAME` with only [A-Za-z0-9-]."""
    return "relaytrain-" + re.sub(r"[^A-Za-z0-9-]+", "-", blueprint.name).strip("-")
