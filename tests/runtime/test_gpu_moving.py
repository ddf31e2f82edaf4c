"""Moving a run between topologies from the same store: leg relay -> GPU/VM node -> leg relay, on CPU.

The node is the real entry point (`python -m relaytrain_runtime node`, one process); on CPU in fp32 the
moved run must end bitwise equal to one uninterrupted leg (docs/GPU.md: the guarantee per device and
precision)."""

import json
import subprocess
import sys

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import new_run

SPEC = {"preset": "tiny-gpt", "steps": 12, "batch_size": 8, "seq_len": 64, "eval_batches": 2, "keep_last": 2,
        "micro_batch_size": 4}


def test_run_moved_legs_to_node_and_back_equals_one_that_never_moved(dataset_store, tmp_path):
    still = run_leg(new_run(f"file://{tmp_path}/still", dataset_store), spec=SPEC)
    assert still["done"] and still["step"] == 12

    url = new_run(f"file://{tmp_path}/moved", dataset_store)
    Baton(open_store(url)).init(RunSpec.from_dict(SPEC))
    first = run_leg(url, max_steps=4)  # serverless legs start the run
    assert first["step"] == 4 and not first["done"]
    node = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "node", "--store", url, "--max-steps", "5"],
                          capture_output=True, text=True, timeout=300)
    assert node.returncode == 0, node.stderr[-3000:]
    status = json.loads(node.stdout.strip().splitlines()[-1])
    assert status["step"] == 9 and status["leg_steps"] == 5 and status["commits"] == 1
    assert status["throughput"]["tokens_per_s"] > 0 and status["throughput"]["mfu"] is None  # CPU: no GPU peak
    last = run_leg(url)  # and back to legs for the rest
    assert last["done"] and last["step"] == 12
    assert last["weights_sha256"] == still["weights_sha256"]
    assert last["val_loss"] == still["val_loss"]
