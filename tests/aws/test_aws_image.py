"""Prebuilt runtime images: the blueprint's `image_uri`, its checks, the stack built from it, and
`relaytrain image build|push` (their docker commands are printed and checked, never run here)."""

import json

import pytest

from relaytrain.blueprint import BlueprintError, loads
from relaytrain.blueprint.validate import advice
from relaytrain.cli import main
from tests.conftest import ROOT

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/relaytrain-runtime"
DIGEST = "sha256:" + "ab" * 32


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def blueprint_text(name: str, image_uri: str) -> str:
    return (ROOT / "blueprints" / f"{name}.yaml").read_text() + f"\nimage_uri: {image_uri}\n"


def test_digest_pinned_image_is_accepted_without_advice():
    bp = loads(blueprint_text("tiny-gpt-lambda-steps", f"{REPO}@{DIGEST}"), "steps.yaml")
    assert bp.image_uri == f"{REPO}@{DIGEST}"
    assert advice(bp) == []


def test_tagged_image_is_accepted_with_a_warning(capsys, tmp_path):
    path = tmp_path / "steps.yaml"
    path.write_text(blueprint_text("tiny-gpt-lambda-steps", f"{REPO}:v1"))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: warning: image_uri: tag 'v1' can be moved to another image; pin the digest" in out


@pytest.mark.parametrize("name, uri, message", [
    ("tiny-gpt-lambda-steps", "relaytrain-runtime:latest", "is not an ECR image URI"),
    ("tiny-gpt-lambda-steps", "docker.io/library/python:3.11", "is not an ECR image URI"),
    ("tiny-gpt-lambda-steps", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/r@" + DIGEST,
     "the image is in eu-west-1; Lambda pulls images from the function's own region (us-east-1)"),
    ("tiny-gpt-ec2-gpu", f"{REPO}@{DIGEST}", "is used by AWS Lambda workers only"),
    ("tiny-gpt-function-shards", f"{REPO}@{DIGEST}", "is used by AWS Lambda workers only"),
])
def test_bad_image_uri_is_one_line_at_its_field(name, uri, message):
    with pytest.raises(BlueprintError) as caught:
        loads(blueprint_text(name, uri), "bp.yaml")
    [line] = [p for p in caught.value.problems if "image_uri" in p]
    assert line.startswith("bp.yaml:") and ": image_uri: " in line and message in line


def test_build_prints_the_docker_build_for_the_lambda_platform(capsys):
    assert main(["image", "build", f"{REPO}:v1", "--arch", "arm64", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"+ docker build --platform linux/arm64 --provenance=false -t {REPO}:v1 {ROOT / 'runtime'}"]


def test_push_prints_push_and_the_digest_lookup_never_a_login(capsys):
    assert main(["image", "push", f"{REPO}:v1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"+ docker push {REPO}:v1",
                                f"+ docker inspect --format '{{{{index .RepoDigests 0}}}}' {REPO}:v1"]
    assert "login" not in out


def test_image_command_refuses_a_uri_without_a_tag(capsys):
    assert main(["image", "build", f"{REPO}@{DIGEST}", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an ECR image URI with a tag" in err[0]


@pytest.fixture(scope="module")
def prebuilt_templates(tmp_path_factory):
    from relaytrain.aws.synth import synth_templates

    blueprints = [loads(blueprint_text(n, f"{REPO}@{DIGEST}"), n) for n in ("tiny-gpt-lambda-steps", "tiny-hybrid-aws")]
    out = tmp_path_factory.mktemp("prebuilt")
    return {p.name: json.loads(p.read_text()) for p in synth_templates(blueprints, out)}, out


def test_prebuilt_image_is_used_and_only_its_repository_may_be_pulled(prebuilt_templates):
    templates, out = prebuilt_templates
    assert not list(out.glob("*.assets.json"))  # nothing is built
    for name, template in templates.items():
        functions = [r for r in template["Resources"].values()
                     if r["Type"] == "AWS::Lambda::Function" and "ImageConfig" in r["Properties"]]
        assert functions, name
        for fn in functions:
            image = json.dumps(fn["Properties"]["Code"]["ImageUri"])
            assert "relaytrain-runtime@" + DIGEST in image and "cdk-hnb659fds-container-assets" not in image
        ecr_grants = [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                      for s in r["Properties"]["PolicyDocument"]["Statement"]
                      if any(a.startswith("ecr:") for a in as_list(s["Action"]))]
        assert len(ecr_grants) == len(functions), name
        for grant in ecr_grants:
            assert sorted(grant["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
            assert "repository/relaytrain-runtime" in json.dumps(grant["Resource"])
            assert ":ecr:us-east-1:123456789012:" in json.dumps(grant["Resource"])
