"""Shared test setup. Fixtures live in tests/fixtures/, one module per area (owner per module)."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Subprocesses (legs, shards, CLI calls) must import this checkout's code.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "runtime"), str(ROOT / "stacks"), str(ROOT)]
    + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# Deterministic CPU arithmetic: one intra-op thread unless a test says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = [
    "tests.fixtures.runs",
    "tests.fixtures.servers",
    "tests.fixtures.cdk",
    "tests.fixtures.pulumi",
    "tests.fixtures.shards",
    "tests.fixtures.pretrained",
]
