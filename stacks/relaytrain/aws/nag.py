"""cdk-nag (v3, AwsSolutions pack): registration and exact, scoped acknowledgments.

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
