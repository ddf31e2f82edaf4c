"""Precision, the training internals the GPU path relies on, and throughput, on CPU (in-process, tiny GPT).

Guarantees tested here (docs/GPU.md states them per precision and device):
- fp32 on CPU: a run cut and resumed is bitwise the uninterrupted run (also covered end to end by the leg tests).
- bf16-mixed on CPU: the final weights are within BF16_TOLERANCE (relative L2) of fp32's, and a bf16 run cut
  and resumed is bitwise the uninterrupted bf16 run (autocast on CPU is deterministic).
- fp16-mixed: the gradient scaler's state travels with the checkpoint, so a resumed run is bitwise too.
"""

import contextlib
import copy

import pytest
import torch

from relaytrain_runtime.model import build_model
from relaytrain_runtime.precision import Precision, default_precision, resolve
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.train import apply_update, forward_backward, make_optimizer

STEPS = 6
BF16_TOLERANCE = 1e-2  # ||w_bf16 - w_fp32|| / ||w_fp32|| after 6 steps at lr 1e-3 (measured 2.5e-3; fp16-mixed 8e-4)


def _spec(**extra) -> RunSpec:
    return RunSpec(preset="tiny-gpt", steps=STEPS, seed=3, batch_size=4, micro_batch_size=2, seq_len=32, lr=1e-3,
                   warmup_steps=1, **extra)


def _batch(step: int) -> dict:
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(0, 4096, (4, 32), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


def _train(spec, model, optimizer, amp, start: int, stop: int) -> list[float]:
    losses = []
    for step in range(start, stop):
        losses.append(forward_backward(model, spec, _batch(step), amp=amp))
        apply_update(model, optimizer, spec, step, amp=amp)
    return losses


def _fresh(spec):
    torch.manual_seed(0)
    model = build_model(spec.model, seed=spec.seed)
    return model, make_optimizer(model, spec), Precision.for_run(spec, torch.device("cpu"))


def _run(spec, cut: int | None = None) -> tuple[dict, list[float]]:
    """Train STEPS steps; with `cut`, stop there, carry the state (weights, optimizer, scaler) into a fresh
    model, optimizer and precision, and finish: what a leg relay does through the baton."""
    model, optimizer, amp = _fresh(spec)
    if cut is None:
        return model.state_dict(), _train(spec, model, optimizer, amp, 0, STEPS)
    losses = _train(spec, model, optimizer, amp, 0, cut)
    saved = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scaler": amp.state_dict()})
    model, optimizer, amp = _fresh(spec)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    amp.load_state_dict(saved["scaler"])
    return model.state_dict(), losses + _train(spec, model, optimizer, amp, cut, STEPS)


def _relative(a: dict, b: dict) -> float:
    num = sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a) ** 0.5
    return float(num / sum((b[k].double() ** 2).sum() for k in b) ** 0.5)


def _bitwise(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def fp32():
    return _run(_spec(precision="fp32"))


def test_defaults_per_device():
    assert default_precision(torch.device("cpu")) == "fp32"
    assert resolve("", torch.device("cpu")) == "fp32" and resolve("bf16-mixed", torch.device("cpu")) == "bf16-mixed"
    with pytest.raises(ValueError, match="expected one of fp32, bf16-mixed, fp16-mixed"):
        resolve("fp8", torch.device("cpu"))
    assert Precision.for_run(_spec(precision="fp16-mixed"), torch.device("cpu")).scaler is not None
    assert Precision.for_run(_spec(precision="bf16-mixed"), torch.device("cpu")).scaler is None


def test_fp32_cut_is_bitwise_and_equals_no_precision_object(fp32):
    weights, losses = _run(_spec(precision="fp32"), cut=3)
    assert _bitwise(weights, fp32[0]) and losses == fp32[1]
    spec = _spec()  # amp=None: the path the legs and shards take
    model, optimizer, _ = _fresh(spec)
    assert _train(spec, model, optimizer, None, 0, STEPS) == fp32[1]
    assert _bitwise(model.state_dict(), fp32[0])


def test_bf16_within_tolerance_of_fp32_and_its_cut_is_bitwise(fp32):
    bf16 = _run(_spec(precision="bf16-mixed"))
    diff = _relative(bf16[0], fp32[0])
    assert 0 < diff <= BF16_TOLERANCE, diff  # > 0: autocast really ran the matmuls in bf16
    cut = _run(_spec(precision="bf16-mixed"), cut=3)
    assert _bitwise(cut[0], bf16[0]) and cut[1] == bf16[1]


def test_fp16_scaler_state_travels_and_the_cut_is_bitwise():
    whole = _run(_spec(precision="fp16-mixed"))
    cut = _run(_spec(precision="fp16-mixed"), cut=3)
    assert _bitwise(cut[0], whole[0]) and cut[1] == whole[1]


class _CountingDDP(torch.nn.Module):
    """Stands in for DistributedDataParallel: records which micro-batches ran under no_sync()."""

    def __init__(self, module):
        super().__init__()
        self.module, self.synced = module, []
        self._sync = True

    @contextlib.contextmanager
    def no_sync(self):
        self._sync = False
        try:
            yield
        finally:
            self._sync = True

    def forward(self, *args):
        self.synced.append(self._sync)
        return self.module(*args)


def test_gradient_all_reduce_only_on_the_last_micro_batch():
    spec = RunSpec(preset="tiny-gpt", steps=1, batch_size=8, micro_batch_size=2, seq_len=16)
    wrapped = _CountingDDP(build_model(spec.model, seed=0))
    ids = torch.randint(0, 4096, (8, 16))
    loss = forward_backward(wrapped, spec, {"input_ids": ids, "labels": ids})
    assert wrapped.synced == [False, False, False, True] and loss > 0


def test_adamw_kernel_by_device():
    from relaytrain_runtime.train import adamw_kernel

    assert adamw_kernel(torch.device("cuda")) == {"fused": True}
    assert adamw_kernel(torch.device("cpu")) == {"foreach": False}


def test_prefetcher_yields_every_step_in_order_on_the_device():
    from relaytrain_runtime.speed import Prefetcher

    seen = [(step, b["input_ids"].device.type, int(b["input_ids"][0, 0])) for step, b in
            Prefetcher(lambda s: {"input_ids": torch.full((2, 3), s)}, torch.device("cpu"), start=2, stop=6)]
    assert seen == [(2, "cpu", 2), (3, "cpu", 3), (4, "cpu", 4), (5, "cpu", 5)]


def test_throughput_mfu_and_device_names():
    from relaytrain_runtime.throughput import flops_per_token, gpu_of_device_name, measure, peak_flops

    assert gpu_of_device_name("NVIDIA H100 80GB HBM3") == "H100"
    assert gpu_of_device_name("NVIDIA L40S") == "L40S" and gpu_of_device_name("NVIDIA L4") == "L4"
    assert gpu_of_device_name("NVIDIA A100-SXM4-80GB") == "A100-80GB" and gpu_of_device_name("Tesla T4") == "T4"
    assert gpu_of_device_name("AMD EPYC") is None
    assert peak_flops("H100", "bf16-mixed") == 989e12 and peak_flops("V100", "fp32") == 15.7e12
    model = _spec().model
    out = measure(tokens=1_000_000, seconds=10.0, model=model, seq_len=32, world=2, gpu="A100",
                  precision="bf16-mixed", peak_memory_bytes=3 * 1024**3)
    expected = 1e5 * flops_per_token(model, 32) / (2 * 312e12)
    assert out["tokens_per_s"] == 1e5 and out["mfu"] == round(expected, 4) and out["peak_memory_gib"] == 3.0
    assert measure(tokens=10, seconds=1.0, model=model, seq_len=32, world=1, gpu=None, precision="fp32")["mfu"] is None


def test_late_spec_fields_keep_old_digests():
    plain = RunSpec(preset="tiny-gpt", steps=5)
    assert "precision" not in plain.to_dict() and "parallelism" not in plain.to_dict()
    fsdp = RunSpec(preset="tiny-gpt", steps=5, parallelism="fsdp", compile=True)
    assert fsdp.to_dict()["parallelism"] == "fsdp" and fsdp.digest() != plain.digest()
    assert RunSpec.from_json(fsdp.to_json()) == fsdp
    with pytest.raises(Exception, match="parallelism: must be ddp or fsdp"):
        RunSpec(parallelism="zero3")
