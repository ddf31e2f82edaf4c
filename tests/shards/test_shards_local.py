"""The local runner behind `relaytrain run FILE --local` for function-shards blueprints.

Shard and reduce steps run as separate processes; chaos kills some of them at random moments;
the run still ends with the model of the in-process reference, bit for bit.
"""

import json
import subprocess
import sys

from relaytrain.blueprint.schema import Blueprint
from tests.fixtures.shards import bitwise_equal, drive, weights

TRAINING = {"preset": "tiny-gpt", "steps": 2, "batch_size": 4, "seq_len": 32, "eval_batches": 1}
FUNCTIONS = {"shards": 2, "sync": "gradients", "timeout_s": 600}


def blueprint(**functions) -> Blueprint:
    return Blueprint.model_validate({"name": "tiny-shards", "cloud": "gcp", "topology": "function-shards",
                                     "training": TRAINING, "functions": {**FUNCTIONS, **functions}})


def test_kit_runner_imports_no_torch():
    code = "import relaytrain.localrun.shards, sys, json; print(json.dumps(sorted(sys.modules)))"
    mods = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                     text=True).stdout.splitlines()[-1])
    assert "torch" not in mods


def test_run_local_with_killed_shards_matches_reference(shards_run):
    from relaytrain.localrun.shards import run_local

    ref = shards_run("ref")
    drive(ref, TRAINING, blueprint(exchange_dtype="fp32").functions.shards_config().to_dict())
    bp = blueprint(exchange_dtype="fp32")
    url = shards_run("local")
    lines = []
    # seed 3 kills the first attempt of round 0's shard 1 (the runner retries it)
    summary = run_local(bp, url, kill_prob=0.3, chaos_seed=3, parallel_reduce=True, log=lines.append)
    assert summary["done"] and summary["step"] == TRAINING["steps"] and summary["rounds"] == TRAINING["steps"]
    assert summary["killed"] >= 1 and summary["retries"] >= summary["killed"]
    assert bitwise_equal(weights(url), weights(ref))
    assert len(lines) == summary["rounds"] + 1 and "loss" in lines[-1]
    # run again: the finished run is recognised, nothing is recomputed
    again = run_local(bp, url, log=None)
    assert again["rounds"] == 0 and again["done"]


def test_run_local_refuses_other_topologies(shards_run):
    import pytest

    from relaytrain.localrun.shards import ShardsRunError, run_local

    bp = Blueprint.model_validate({"name": "x", "cloud": "aws", "topology": "lambda-steps"})
    with pytest.raises(ShardsRunError, match="topology 'lambda-steps'; the shards runner needs function-shards"):
        run_local(bp, shards_run())


def test_stragglers_get_backup_copies(shards_run):
    """Past the round deadline every unfinished shard gets one backup invocation; the first copy to
    finish counts and the other is stopped; the round commits the same model."""
    from relaytrain.localrun.shards import run_local

    ref = shards_run("ref")
    drive(ref, TRAINING, blueprint(exchange_dtype="fp32").functions.shards_config().to_dict(), rounds=1)
    url = shards_run("local")
    summary = run_local(blueprint(exchange_dtype="fp32"), url, max_rounds=1, round_deadline_s=0.05,
                        parallel_reduce=False, log=None)
    assert summary["rounds"] == 1 and summary["backups"] >= 1
    assert bitwise_equal(weights(url), weights(ref))
