"""The Lambda container image definition (runtime/Dockerfile): complete and consistent with the
code, checked statically (there is no Docker daemon on these machines)."""

import fnmatch
import importlib
import os
import re
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def instructions():
    text = (RUNTIME / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_base_image_torch_and_cmd():
    lines = instructions()
    assert lines[0].startswith("FROM public.ecr.aws/lambda/python:3.11")
    torch_line = next(line for line in lines if "torch==" in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line
    version = re.search(r"ARG TORCH_VERSION=(\S+)", "\n".join(lines)).group(1)
    pins = (RUNTIME.parent / "requirements-dev.txt").read_text()
    assert f"torch=={version}" in pins  # the image runs the torch the tests ran
    cmd = next(line for line in lines if line.startswith("CMD"))
    handler = re.search(r'CMD \["([\w.]+)"\]', cmd).group(1)
    module, fn = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), fn))


def test_copied_sources_exist_and_install_the_runtime_alone():
    lines = instructions()
    for line in lines:
        if line.startswith("COPY"):
            for src in line.split()[1:-1]:
                assert (RUNTIME / src).exists(), src
    install = next(line for line in lines if "pip install \"/tmp/relaytrain-runtime" in line)
    assert "[s3,zstd]" in install
    assert not any(word in " ".join(lines) for word in ("aws-cdk", "pulumi", "stacks/"))


def test_dockerignore_keeps_caches_out_of_the_context():
    patterns = [p for p in (RUNTIME / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.removeprefix("**/"))
                   or any(fnmatch.fnmatch(part, p.removeprefix("**/")) for part in rel.split("/")) for p in patterns)

    for rel in ("relaytrain_runtime/__pycache__/spec.cpython-311.pyc", "relaytrain_runtime/store/x.pyc",
                ".pytest_cache/v/cache", "relaytrain_runtime.egg-info/PKG-INFO", "build/lib/x.py"):
        assert ignored(rel), rel
    kept = [str(p.relative_to(RUNTIME)) for p in RUNTIME.rglob("*.py") if "__pycache__" not in p.parts]
    assert kept and not any(ignored(rel) for rel in kept)
    assert not ignored("pyproject.toml") and not ignored("Dockerfile")
    assert os.path.exists(RUNTIME / "relaytrain_runtime" / "handlers" / "aws_lambda.py")
