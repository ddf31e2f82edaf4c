"""relaytrain's GCP rules (`relaytrain.gcp.policy.RULES`) as `pulumi-policy` resource policies.

The rules are the same functions the test suite runs over the mocked resource graph of every
GCP blueprint; here they check a real `pulumi preview` / `pulumi up`.
"""

from __future__ import annotations

import pathlib
import sys

STACKS = pathlib.Path(__file__).resolve().parents[1]
if str(STACKS) not in sys.path:  # the pack runs from its own folder, next to the kit's sources
    sys.path.insert(0, str(STACKS))

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy  # noqa: E402

from relaytrain.gcp.policy import RULES, Rule  # noqa: E402


def _validator(rule: Rule):
    def validate(args, report_violation) -> None:
        for message in rule.check(args.resource_type, args.name, dict(args.props)):
            report_violation(message, args.urn)

    return validate


def policies() -> list[ResourceValidationPolicy]:
    return [ResourceValidationPolicy(name=rule.name, description=rule.description, validate=_validator(rule),
                                     enforcement_level=EnforcementLevel.MANDATORY) for rule in RULES]
