"""cdk-nag (v3, AwsSolutions pack) and checkov: registration and exact, scoped acknowledgments.

Every acknowledgment names one exact finding (rule plus the offending action or resource) on
the construct that causes it, with the reason it is accepted. Unacknowledged findings make
`app.synth()` raise ValidationFailed.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def register(app: App) -> None:
    """Run the AwsSolutions pack on every stack of `app`."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def ack(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and below."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason))


def arn_ref(resource: IConstruct, suffix: str = "") -> str:
    """How cdk-nag prints the ARN of `resource` (same stack: `<LogicalId.Arn>`) followed by `suffix`."""
    cfn = resource.node.default_child if not isinstance(resource, CfnResource) else resource
    stack = Stack.of(resource)
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.Arn>{suffix}"


def checkov_skip(resource: IConstruct, check: str, reason: str) -> None:
    """Suppress one checkov check (e.g. `CKV_AWS_116`) on exactly this resource, with the reason, in
    its template metadata (`Metadata.checkov.skip`), where checkov reads it."""
    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    skips = [s for s in (cfn.get_metadata("checkov") or {}).get("skip", []) if s["id"] != check]
    cfn.add_metadata("checkov", {"skip": [*skips, {"id": check, "comment": reason}]})
