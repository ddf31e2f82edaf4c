"""GPU catalog and prices, per-GPU memory fit with FSDP, the `plan --compare` verdict, calibration from a node."""

import json

import pytest

from relaytrain import prices
from relaytrain.blueprint import BlueprintError, limits, loads
from relaytrain.blueprint.memory import GIB, training_memory
from relaytrain.cli import main
from relaytrain.plan import Plan, node_hourly_usd, plan
from relaytrain.plan.compare import verdict
from relaytrain.plan.devices import calibrate_from_node_status, load_devices
from relaytrain_runtime import RelayError
from relaytrain_runtime.presets import ModelConfig
from relaytrain_runtime.throughput import GPU_PEAK_FLOPS

# the 1.1B Llama-family shape's size as a GPT-family config: 22 layers, d_model 2048, vocab 32000 (~1.1e9 params)
BIG = ModelConfig("gpt", vocab_size=32000, n_positions=2048, d_model=2048, n_layers=22, n_heads=32, d_ff=5632 * 3 // 2)
NEW = {"aws": ("g6.xlarge", "g6.12xlarge", "g6e.xlarge", "g6e.48xlarge", "p4d.24xlarge", "p4de.24xlarge",
               "p5.48xlarge", "p5e.48xlarge"),
       "gcp": ("g2-standard-8", "g2-standard-48", "a2-highgpu-1g", "a2-highgpu-8g", "a2-ultragpu-1g", "a3-highgpu-8g")}


def _bp(cloud: str, instance: str, **training) -> str:
    fields = ", ".join(f"{k}: {v}" for k, v in {"preset": "gpt2-small", "steps": 100, "batch_size": 8,
                                                  "seq_len": 512, **training}.items())
    return f"name: gpu-{instance.replace('.', '-')}\ncloud: {cloud}\ntopology: gpu-node\ntraining: {{{fields}}}\n" \
           f"gpu: {{instance_type: {instance}}}\n"


@pytest.mark.parametrize("cloud,instance", [(c, i) for c, names in NEW.items() for i in names])
def test_current_gpu_instances_are_in_the_catalog_with_prices(cloud, instance):
    gpu, count = limits.gpu_of(cloud, instance)
    assert gpu is not None and count >= 1 and gpu.memory_gib >= 24 and gpu.name in GPU_PEAK_FLOPS
    bp = loads(_bp(cloud, instance))
    on_demand, spot = node_hourly_usd(bp, spot=False), node_hourly_usd(bp, spot=True)
    assert on_demand > spot > 0
    p = plan(bp)
    assert p.total_usd > 0 and f"{count}x {gpu.name}" in p.workers


def test_h100_node_facts():
    gpu, count = limits.gpu_of("aws", "p5.48xlarge")
    assert (gpu.name, gpu.memory_gib, count) == ("H100", 80, 8)
    assert limits.gpu_of("gcp", "a3-highgpu-8g")[0].name == "H100"
    assert prices.price("ec2.p5.48xlarge").source.startswith("[unverified]")


def test_fsdp_shards_the_state_over_every_gpu():
    ddp = training_memory(BIG, 1, 512, gpu=True)
    fsdp = training_memory(BIG, 1, 512, gpu=True, shards=8)
    assert not ddp.fits(24 * GIB) and fsdp.fits(24 * GIB)  # one L4 of a g6.48xlarge
    assert fsdp.optimizer == pytest.approx(ddp.optimizer / 8) and fsdp.activations == ddp.activations
    assert ddp.weights / 8 < fsdp.weights < ddp.weights / 4  # a shard plus the two blocks in flight


def test_validation_knows_per_gpu_memory_and_fsdp():
    big = dict(preset="bert-large", batch_size=64, micro_batch_size=64, seq_len=512)
    with pytest.raises(BlueprintError) as err:
        loads(_bp("aws", "g6.xlarge", **big))
    assert "one L4 (24 GiB) of g6.xlarge" in str(err.value.problems)
    loads(_bp("aws", "p5.48xlarge", **big))  # 80 GiB per GPU: fits
    assert "FSDP over 8 GPUs" not in _problem(_bp("aws", "p4d.24xlarge", **{**big, "micro_batch_size": 128,
                                                                            "batch_size": 1024}))
    assert "FSDP over 8 GPUs" in _problem(_bp("aws", "p4d.24xlarge", parallelism="fsdp",
                                              **{**big, "micro_batch_size": 128, "batch_size": 1024}))


def _problem(text: str) -> str:
    try:
        loads(text)
    except BlueprintError as exc:
        return " ".join(exc.problems)
    return ""


def _plan(name: str, topology: str, usd: float, hours: float, flops: float, cloud: str = "aws") -> Plan:
    return Plan(name, topology, cloud, "", "gpt2-small", 1, 1, 1.0, "", flops, 0.0, hours * 3600, total_usd=usd)


def test_verdict_names_cheapest_fastest_and_break_even():
    lam = _plan("legs", "lambda-steps", 40.0, 70.0, 100e9)
    shards = _plan("shards", "function-shards", 90.0, 30.0, 8 * 200e9, cloud="gcp")
    gpu = _plan("v100", "gpu-node", 8.0, 2.0, 6e12)
    lines = verdict([lam, shards, gpu], [1, 8, 1])
    assert lines[0] == "verdict: cheapest v100 (gpu-node) at $8.00, 5.0x cheaper than the next, legs ($40.00)"
    assert lines[1] == "verdict: fastest v100 (gpu-node) in 2.0 h, 15.0x faster than the next, shards (30.0 h)"
    assert "legs would break even with v100 at 500 GFLOP/s per worker (planned 100 GFLOP/s, 5.0x more)" in lines[2]
    assert lines[3].startswith("verdict: moving legs onto v100 from the same store pays while more than")
    assert "shards would break even with v100 at 2,250 GFLOP/s per worker" in lines[4]
    assert len(lines) == 5  # no move across clouds: the GCP shards and the AWS node share no store
    assert verdict([], []) == ["verdict: no topology can run this job (see the errors above)"]


def test_compare_cli_ends_with_the_verdict(tmp_path, capsys):
    files = []
    lam = "name: lam\ncloud: aws\ntopology: lambda-steps\ntraining: {preset: tiny-gpt, steps: 50}\n"
    for name, text in (("lam", lam),
                       ("gpu", _bp("aws", "g6.xlarge", preset="tiny-gpt", steps=50, seq_len=128))):
        (tmp_path / f"{name}.yaml").write_text(text)
        files.append(str(tmp_path / f"{name}.yaml"))
    assert main(["plan", "--compare", *files, "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    verdicts = [i for i, line in enumerate(out) if line.startswith("verdict: ")]
    assert verdicts and out[verdicts[0]].startswith("verdict: cheapest ")
    assert any("break even" in out[i] or "already costs no more" in out[i] for i in verdicts)


def test_calibrate_from_a_node_status_makes_the_plan_use_the_measured_mfu(tmp_path):
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"cpu_flops_per_vcpu": 31e9}))
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"status": "done", "throughput": {"gpu": "L4", "mfu": 0.2, "tokens_per_s": 1.0}}))
    calibrate_from_node_status(status, calibration)
    devices = load_devices(calibration)
    assert devices.gpu_mfu == {"L4": 0.2} and devices.cpu_flops_per_vcpu == 31e9
    bp = loads(_bp("aws", "g6.xlarge", precision="bf16-mixed"))
    assert plan(bp, devices).worker_flops == pytest.approx(0.2 * 121e12)
    assert plan(bp).worker_flops == pytest.approx(0.4 * 121e12)  # assumed MFU
    status.write_text(json.dumps({"status": "done"}))
    with pytest.raises(RelayError, match="not a node status with a measured throughput"):
        calibrate_from_node_status(status, calibration)
