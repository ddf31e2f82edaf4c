"""sync: diloco - H local AdamW steps per shard, outer Nesterov step on the mean delta."""

import math

import pytest
import torch

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store
from tests.fixtures.shards import drive, rel_diff, weights


def val_loss(url: str) -> float:
    baton = Baton(open_store(url))
    return baton.read_state(baton.latest())["val_loss"]


def test_one_shard_outer_identity_is_the_single_worker(shards_run):
    """K=1, outer lr 1, no momentum: theta + mean delta = the shard's own AdamW trajectory, whose
    moments persist across rounds: the single worker's run (up to theta0 + (theta - theta0) rounding)."""
    spec = {"preset": "tiny-gpt", "steps": 10, "batch_size": 4, "seq_len": 32, "lr": 3e-3, "eval_batches": 2}
    single = shards_run("single")
    run_leg(single, spec=spec)
    url = shards_run("diloco")
    out = drive(url, spec, {"shards": 1, "sync": "diloco", "local_steps": 4, "outer_lr": 1.0, "outer_momentum": 0.0})
    assert [o["step"] for o in out] == [4, 8, 10]  # the last round is shorter
    assert rel_diff(weights(url), weights(single)) <= 1e-6
    assert math.isclose(val_loss(url), val_loss(single), rel_tol=1e-5)
    assert open_store(url).list("inner/") == ["inner/00000002/0000"]  # only the last round's moments remain


def test_diloco_reaches_single_worker_loss_for_same_tokens(shards_run):
    """K=4 shards, H=8: 16 rounds see the tokens of 128 single-worker steps (global batch 8 x 32).

    Measured on this machine: single 6.8735, diloco 6.9369 (outer lr 0.5, momentum 0.5): +0.9 %.
    (The blueprint defaults 0.7 / 0.9 tuned for long runs give +5.3 % on so short a run: see docs/SHARDS.md.)
    """
    spec = {"preset": "tiny-gpt", "steps": 128, "batch_size": 8, "seq_len": 32, "lr": 3e-3, "min_lr": 3e-4,
            "warmup_steps": 6, "eval_batches": 8}
    single = shards_run("single")
    run_leg(single, spec=spec)
    url = shards_run("diloco")
    out = drive(url, spec, {"shards": 4, "sync": "diloco", "local_steps": 8, "outer_lr": 0.5, "outer_momentum": 0.5})
    assert len(out) == 16 and out[-1]["tokens"] == 128 * 8 * 32
    a, b = val_loss(single), val_loss(url)
    print(f"validation loss: single worker {a:.4f}, diloco K=4 H=8 {b:.4f} ({100 * (b / a - 1):+.2f} %)")
    assert b <= 1.05 * a
    assert b < 7.2  # both learned: the initial loss is ln(4096) = 8.3


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_low_precision_deltas(shards_run, dtype):
    """Deltas travel in 16 bits; the round still trains (loss falls) and objects are half the size."""
    spec = {"preset": "tiny-gpt", "steps": 4, "batch_size": 4, "seq_len": 32, "lr": 3e-3, "eval_batches": 1}
    url = shards_run(dtype)
    out = drive(url, spec, {"shards": 2, "sync": "diloco", "local_steps": 2, "exchange_dtype": dtype})
    ref = shards_run("fp32")
    ref_out = drive(ref, spec, {"shards": 2, "sync": "diloco", "local_steps": 2})
    assert out[-1]["done"] and torch.isfinite(torch.tensor(out[-1]["loss"]))
    assert 0 < rel_diff(weights(url), weights(ref)) <= 1e-3
    ratio = out[-1]["bytes_read"] / ref_out[-1]["bytes_read"]
    assert 0.49 < ratio < 0.51, ratio  # the reducers read 16-bit shard objects
