"""Training further: raising `steps` on an existing (even finished) run is a recorded new spec version and
the run continues from its last commit; lowering steps or any other change is refused, the run untouched."""

import json
import subprocess
import sys

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.keys import SPEC_KEY, spec_version_key
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store


def _init(url, *args):
    return subprocess.run([sys.executable, "-m", "relaytrain_runtime", "init", "--store", url, "--preset", "tiny-gpt",
                           "--seed", "7", "--batch-size", "4", "--seq-len", "32", "--eval-batches", "2", "--lr", "1e-3",
                           "--warmup-steps", "2", *args], capture_output=True, text=True)


def test_raising_steps_records_a_new_version_and_training_continues(tiny_run):
    url = tiny_run(steps=4)
    store = open_store(url)
    assert run_leg(url)["done"]
    first = store.read(SPEC_KEY)
    proc = _init(url, "--steps", "7")
    assert proc.returncode == 0 and json.loads(proc.stdout)["created"], proc.stderr
    assert store.read(SPEC_KEY) == first and store.exists(spec_version_key(2))
    assert Baton(store).spec().steps == 7
    again = _init(url, "--steps", "7")
    assert again.returncode == 0 and not json.loads(again.stdout)["created"]
    status = run_leg(url)
    assert status["done"] and status["leg_steps"] == 3 and status["step"] == 7

    lower = _init(url, "--steps", "6")
    assert lower.returncode != 0 and "steps=7 (asked 6)" in lower.stderr and "only raising steps" in lower.stderr
    other = _init(url, "--steps", "9", "--lr", "2e-3")
    assert other.returncode != 0 and "lr=0.001 (asked 0.002)" in other.stderr
    assert Baton(store).spec().steps == 7 and not store.exists(spec_version_key(3))
