"""MFU in the metrics stream: each train record carries it where the device's peak is known, computed with the run's
spec (LoRA trains fewer FLOPs per token than a full fine-tune of the same model)."""

import pytest

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.metrics import read_stream
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from relaytrain_runtime.throughput import flops_per_token, measure, peak_flops


def test_train_records_carry_mfu_where_the_peak_is_known(tiny_run, monkeypatch):
    import relaytrain_runtime.engine as engine

    cpu = tiny_run()
    run_leg(cpu, max_steps=2, threads=1)
    assert all("mfu" not in r for r in read_stream(open_store(cpu), "train"))  # CPU: no peak, no MFU

    monkeypatch.setattr(engine, "device_gpu", lambda device: "A100")  # as if the device were an A100
    url = tiny_run()
    run_leg(url, max_steps=3, threads=1)
    spec = Baton(open_store(url)).spec()
    per_token = flops_per_token(spec.model, spec.sequence_length, spec)
    records = read_stream(open_store(url), "train")
    assert len(records) == 3
    for r in records:
        expected = r["tokens_per_s"] * per_token / peak_flops("A100", "fp32")
        assert r["mfu"] == pytest.approx(expected, rel=1e-9) and r["mfu"] > 0


def test_measure_counts_lora_flops_from_the_spec():
    full = RunSpec(preset="tinyllama-1.1b", seq_len=256, batch_size=8, micro_batch_size=1)
    lora = RunSpec(preset="tinyllama-1.1b", seq_len=256, batch_size=8, micro_batch_size=1, finetune="lora")
    args = dict(tokens=1_000_000, seconds=10.0, model=full.model, seq_len=256, world=1, gpu="H100",
                precision="bf16-mixed")
    with_lora, without = measure(**args, spec=lora)["mfu"], measure(**args, spec=full)["mfu"]
    assert with_lora == round(1e5 * flops_per_token(lora.model, 256, lora) / peak_flops("H100", "bf16-mixed"), 4)
    assert with_lora < without  # no weight gradients through the frozen base
    assert measure(**args)["mfu"] == without  # no spec: a full training's FLOPs
