"""Security scanners beyond cdk-nag: checkov over every template, and least privilege of `Resource: "*"`."""

import json
import os
import subprocess

from tests.conftest import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# The only actions a template may grant on `Resource: "*"`: AWS offers no resource-level form for
# any of them (Service Authorization Reference). Value: the condition key the grant must carry
# where AWS offers one, else None.
WILDCARD_ONLY = {
    "xray:puttracesegments": None,  # Lambda and Step Functions tracing
    "xray:puttelemetryrecords": None,
    "xray:getsamplingrules": None,
    "xray:getsamplingtargets": None,
    "cloudwatch:putmetricdata": "cloudwatch:namespace",  # leg metrics (state machine) and node metrics
    "ec2:describeinstances": None,  # a node finds node 0 for the rendezvous (hybrid)
    # Step Functions logging to CloudWatch Logs (CDK's grant for a state machine's log destination):
    # vended-log deliveries and the account's log resource policy have no resource-level form
    **{f"logs:{a}": None for a in ("createlogdelivery", "getlogdelivery", "updatelogdelivery", "deletelogdelivery",
                                   "listlogdeliveries", "putresourcepolicy", "describeresourcepolicies",
                                   "describeloggroups")},
    # read-only NFS mount of the EFS cache (CDK's Lambda file-system grant): on `*`, held to the
    # one access point by condition
    "elasticfilesystem:clientmount": "elasticfilesystem:AccessPointArn",
}


def iam_statements(template: dict):
    """(logical id, statement) of every identity policy statement of the template."""
    for logical, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [props["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                yield logical, statement


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def wildcard_problems(templates: dict) -> tuple[list[str], set[str]]:
    """Every `Resource: "*"` grant outside WILDCARD_ONLY or without its condition; the actions seen on `*`."""
    problems, seen = [], set()
    for stack, template in templates.items():
        for logical, statement in iam_statements(template):
            if statement.get("Effect") != "Allow" or "*" not in as_list(statement.get("Resource")):
                continue
            conditions = {key for block in statement.get("Condition", {}).values() for key in block}
            for action in as_list(statement["Action"]):
                seen.add(action.lower())
                if action.lower() not in WILDCARD_ONLY:
                    problems.append(f"{stack} {logical}: {action} on Resource '*'")
                elif (needed := WILDCARD_ONLY[action.lower()]) and needed not in conditions:
                    problems.append(f"{stack} {logical}: {action} on Resource '*' without {needed}")
    return problems, seen


def test_resource_star_only_where_aws_has_no_resource_level_form(aws_templates):
    problems, seen = wildcard_problems(aws_templates)
    assert problems == []
    assert "cloudwatch:putmetricdata" in seen  # the check looked at the statements it is about


def test_a_wildcard_write_is_caught():
    statements = [{"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
                  {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["*"]}]
    policy = {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Statement": statements}}}
    template = {"Resources": {"P": policy}}
    problems, _ = wildcard_problems({"t": template})
    assert problems == ["t P: cloudwatch:PutMetricData on Resource '*' without cloudwatch:namespace",
                        "t P: s3:PutObject on Resource '*'"]


def run_checkov(directory) -> dict:
    """checkov's CloudFormation framework over `directory`, offline (no Prisma Cloud download)."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "cloudformation", "--compact",
         "--skip-download", "-o", "json"],
        capture_output=True, text=True, env=env, check=False)
    assert done.stdout.strip(), done.stderr[-2000:]
    reports = json.loads(done.stdout)
    return {"failed": [f for r in as_list(reports) for f in r["results"]["failed_checks"]],
            "skipped": [f for r in as_list(reports) for f in r["results"]["skipped_checks"]],
            "passed": sum(r["summary"]["passed"] for r in as_list(reports))}


def test_checkov_passes_every_template_with_reasoned_suppressions(aws_templates):
    # `make test` creates checkov's venv before pytest runs: a missing one is a broken setup, not a reason to skip
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make setup` (or `make test`) creates .venv-checkov"
    result = run_checkov(aws_templates.dir)
    failed = sorted(f"{f['file_path']} {f['resource']}: {f['check_id']} {f['check_name']}" for f in result["failed"])
    assert failed == []
    assert result["passed"] > 0 and result["skipped"]
    for skip in result["skipped"]:  # every suppression names exactly one check with its reason
        assert len(skip["check_result"].get("suppress_comment", "")) > 20, skip["resource"]
