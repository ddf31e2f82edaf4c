"""sync: gradients is exact data parallelism: K shards give the single worker's model.

Two claims, both on the tiny GPT with the run spec's default learning rate, after 12 rounds:
- bitwise: K shards == one worker accumulating the same global batch in K micro batches
  (the shards' fp32 mean is exactly that accumulation's arithmetic);
- within 1e-5 relative (||dW|| / ||W|| over all parameters) of one worker taking the global
  batch in a single pass, whose matmuls sum in another order.
"""

import pytest

from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store
from tests.fixtures.shards import bitwise_equal, drive, max_tensor_rel_diff, rel_diff, run_with_dataset, weights

SPEC = {"preset": "tiny-gpt", "steps": 12, "batch_size": 8, "seq_len": 32, "warmup_steps": 2, "eval_batches": 2}


@pytest.fixture(scope="module")
def single(shards_dataset, tmp_path_factory):
    """{micro_batch_size: weights} of single-worker runs (0 = the whole global batch in one pass)."""
    out = {}
    for micro in (0, 4, 2):
        url = run_with_dataset(shards_dataset, tmp_path_factory.mktemp(f"single-{micro}"))
        status = run_leg(url, spec={**SPEC, "micro_batch_size": micro})
        assert status["done"] and status["step"] == SPEC["steps"]
        out[micro] = weights(url)
    return out


@pytest.mark.parametrize("K", [1, 2, 4])
def test_gradients_match_single_worker(shards_run, single, K):
    url = shards_run(f"k{K}")
    out = drive(url, SPEC, {"shards": K, "sync": "gradients"})
    assert len(out) == SPEC["steps"] and out[-1]["done"] and out[-1]["step"] == SPEC["steps"]
    got = weights(url)
    assert bitwise_equal(got, single[0 if K == 1 else SPEC["batch_size"] // K])
    diff = rel_diff(got, single[0])
    worst, name = max_tensor_rel_diff(got, single[0])
    print(f"K={K}: ||dW||/||W|| = {diff:.2e} vs the one-pass single worker (largest tensor: {name} {worst:.2e})")
    assert diff <= 1e-5
    assert open_store(url).list("rounds/") == []  # every committed round's exchange objects are gone
