"""`relaytrain image build|push URI`: the runtime's Lambda image (runtime/Dockerfile) for CI.

    relaytrain image build 123456789012.dkr.ecr.us-east-1.amazonaws.com/relaytrain-runtime:v1 [--arch arm64]
    relaytrain image push  123456789012.dkr.ecr.us-east-1.amazonaws.com/relaytrain-runtime:v1

Each prints the docker commands it runs (`--dry-run`: prints them only). `push` ends by printing
the pushed image's digest-pinned URI, the value for the blueprint's `image_uri`. Logging in to
ECR is the CI job's own step (`aws ecr get-login-password | docker login ...`): never done here.
"""

from __future__ import annotations

import pathlib
import shlex
import subprocess
import sys

from relaytrain.blueprint.validate import ECR_IMAGE_RE

RUNTIME_DIR = pathlib.Path(__file__).resolve().parents[3] / "runtime"  # build context of runtime/Dockerfile
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["build", "push"], help="build the image, or push a built one")
    parser.add_argument("uri", help="ECR image URI: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG")
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64",
                        help="the Lambda architecture of the blueprint's functions (default x86_64)")
    parser.add_argument("--dry-run", action="store_true", help="print the docker commands without running them")


def build_commands(uri: str, arch: str = "x86_64") -> list[list[str]]:
    """`docker build` of the runtime image for Lambda (one platform, no provenance index Lambda refuses)."""
    return [["docker", "build", "--platform", PLATFORMS[arch], "--provenance=false", "-t", uri, str(RUNTIME_DIR)]]


def push_commands(uri: str) -> list[list[str]]:
    """`docker push`, then the digest-pinned URI the registry gave the pushed image."""
    return [["docker", "push", uri], ["docker", "inspect", "--format", "{{index .RepoDigests 0}}", uri]]


def run(args) -> int:
    match = ECR_IMAGE_RE.match(args.uri)
    if not match or not match.group("tag"):
        print(f"relaytrain image: {args.uri!r} is not an ECR image URI with a tag "
              "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG)", file=sys.stderr)
        return 2
    commands = build_commands(args.uri, args.arch) if args.action == "build" else push_commands(args.uri)
    for command in commands:
        print("+ " + shlex.join(command), flush=True)
        if args.dry_run:
            continue
        try:
            done = subprocess.run(command, check=False)
        except FileNotFoundError:
            print("relaytrain image: docker is not installed (needed to build and push the runtime image)",
                  file=sys.stderr)
            return 2
        if done.returncode != 0:
            print(f"relaytrain image: `{shlex.join(command)}` failed with exit status {done.returncode}",
                  file=sys.stderr)
            return done.returncode
    if args.action == "push" and not args.dry_run:
        print("set the blueprint's image_uri to the digest above (REPOSITORY@sha256:...)")
    return 0
