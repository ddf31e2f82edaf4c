"""A short node run to done on a CUDA GPU: final commit, evaluation on the GPU, throughput in the status.

Skipped where no CUDA device exists (every CPU-only machine, including the one this was written on)."""

import json
import math
import subprocess
import sys

import pytest
import torch

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.keys import eval_key
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import new_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: none on this machine")

SPEC = {"preset": "tiny-gpt", "steps": 20, "batch_size": 16, "micro_batch_size": 8, "seq_len": 128,
        "eval_batches": 2, "keep_last": 2}


@pytest.mark.parametrize("precision", ["", "fp32", "fp16-mixed"])
def test_node_on_cuda_runs_to_its_final_commit_and_evaluation(dataset_store, tmp_path, precision):
    url = new_run(f"file://{tmp_path}/run", dataset_store)
    Baton(open_store(url)).init(RunSpec.from_dict({**SPEC, "precision": precision}))
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "node", "--store", url,
                          "--checkpoint-every", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    status = json.loads(out.stdout.strip().splitlines()[-1])
    assert status["status"] == "done" and status["done"] and status["step"] == 20
    assert status["device"].startswith("cuda") and status["commits"] >= 1
    baton = Baton(open_store(url))
    latest = baton.latest()
    assert latest["step"] == 20 and latest["done"] and latest["gen"] == status["gen"]
    evaluation = json.loads(baton.store.read(eval_key(latest["gen"])))
    assert evaluation["step"] == 20 and math.isfinite(evaluation["loss"])
    throughput = status["throughput"]
    assert throughput["tokens_per_s"] > 0 and throughput["peak_memory_gib"] > 0
    if throughput["gpu"] is not None:
        assert 0 < throughput["mfu"] < 1
