"""Every synthesized AWS template passes cfn-lint and is created by moto's CloudFormation."""

import subprocess
import sys

# W3005 (an explicit DependsOn that a GetAtt already implies): CDK adds DependsOn from a Lambda
# function / state machine to its role's default policy so the policy exists before the first
# call; cfn-lint flags the role part of it as redundant. Harmless, and not ours to change.
CFN_LINT_IGNORED = ["W3005"]


def test_cfn_lint_every_template(aws_templates):
    paths = sorted(str(p) for p in aws_templates.dir.glob("*.template.json"))
    assert len(paths) == len(aws_templates)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--ignore-checks",
            *CFN_LINT_IGNORED,
            "--",
            *paths,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_template_deploys_to_moto_cloudformation(aws_templates, cfn_deploy):
    for name, template in aws_templates.items():
        physical = cfn_deploy(template, name, aws_templates.regions[name])
        outputs = physical["__outputs__"]
        assert outputs["StoreUrl"].startswith(f"s3://{outputs['BucketName']}/runs/")
        kinds = {r["Type"] for r in template["Resources"].values()}
        if "AWS::StepFunctions::StateMachine" in kinds:
            assert outputs["StateMachineArn"].startswith("arn:aws:states:")
