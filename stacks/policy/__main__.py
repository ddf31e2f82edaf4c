"""`pulumi preview --policy-pack stacks/policy`: relaytrain's GCP guardrails, all mandatory."""

from pulumi_policy import EnforcementLevel, PolicyPack
from relaytrain_policies import policies

PolicyPack(name="relaytrain-gcp", policies=policies(), enforcement_level=EnforcementLevel.MANDATORY)
