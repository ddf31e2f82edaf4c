"""One snapshot per AWS blueprint's template, and every shipped AWS blueprint synthesizes.

Asset hashes (64 hex digits: image tags, zip keys) are normalised so only real changes show.
Update after an intended change: pytest tests/aws/test_aws_snapshots.py --snapshot-update
"""

import json
import re

import pytest

from relaytrain.aws.names import stack_name
from relaytrain.blueprint import catalog_files, load_all
from tests.fixtures.cdk import AWS_TEST_BLUEPRINTS, load_test_blueprint

HASH = re.compile(r"[0-9a-f]{64}")
AWS_CATALOG = sorted(bp.name for bp in load_all(catalog_files()) if bp.cloud == "aws")
AWS_TESTS = sorted(load_test_blueprint(p).name for p in AWS_TEST_BLUEPRINTS.glob("*.yaml"))


def normalised(template: dict) -> dict:
    return json.loads(HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))


def test_every_shipped_aws_blueprint_synthesizes(aws_templates):
    assert AWS_CATALOG, "the catalog has no AWS blueprint"
    assert {stack_name(type("B", (), {"name": n})) for n in AWS_CATALOG + AWS_TESTS} == set(aws_templates)


@pytest.mark.parametrize("name", AWS_CATALOG + AWS_TESTS)
def test_template_snapshot(aws_templates, snapshot, name):
    template = aws_templates[stack_name(type("B", (), {"name": name}))]
    assert normalised(template) == snapshot


def test_cdk_app_entry_point_matches_relaytrain_synth(aws_templates, tmp_path):
    """What `cdk synth -c blueprint=FILE` runs (cdk.json's app, context and outdir from the CLI's
    environment) writes the same template as `relaytrain synth`."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    app = json.loads((ROOT / "cdk.json").read_text())["app"]
    assert app == "python3 -m relaytrain.aws.app"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},  # no moto session leaking in
        "CDK_OUTDIR": str(tmp_path),
        "CDK_CONTEXT_JSON": json.dumps({"blueprint": "blueprints/tiny-gpt-lambda-steps.yaml"}),
    }
    subprocess.run([sys.executable, "-m", "relaytrain.aws.app"], check=True, cwd=ROOT, env=env, capture_output=True)
    written = sorted(p.name for p in tmp_path.glob("*.template.json"))
    assert written == ["relaytrain-tiny-gpt-lambda-steps.template.json"]
    ours = json.loads((tmp_path / written[0]).read_text())
    assert ours == aws_templates["relaytrain-tiny-gpt-lambda-steps"]
