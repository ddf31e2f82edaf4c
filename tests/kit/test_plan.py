"""The planner: every catalog blueprint plans; FLOPs, legs, prices and budgets behave as documented."""

import json
import subprocess
import sys

import pytest

from relaytrain import prices
from relaytrain.blueprint import catalog_files, load, loads
from relaytrain.cli import main
from relaytrain.plan import flops_per_token, plan
from relaytrain.plan.devices import Devices, load_devices
from relaytrain.plan.sfn import EVENTS_RESERVED
from relaytrain_runtime import RelayError
from relaytrain_runtime.presets import get_preset

CATALOG = catalog_files()
EXPECTED_LINES = {
    "lambda-steps": ["Lambda compute", "Lambda requests", "Step Functions transitions", "S3 storage"],
    "function-shards": ["Cloud Functions vCPU time", "Cloud Functions memory time", "Cloud Workflows steps",
                        "GCS storage"],
    "gpu-node": ["storage"],
    "hybrid": ["EC2", "Lambda compute, preprocess", "Lambda compute, evaluate", "Step Functions transitions"],
}


@pytest.mark.parametrize("path", CATALOG, ids=[p.stem for p in CATALOG])
def test_every_catalog_blueprint_validates_and_plans(path):
    bp = load(path)
    p = plan(bp)
    assert p.flops > 0 and p.wall_s >= p.train_s > 0
    assert p.total_usd == pytest.approx(sum(line.usd for line in p.lines)) and p.total_usd > 0
    for line in p.lines:
        assert line.source.startswith("[") and line.usd == pytest.approx(line.quantity * line.unit_usd)
    items = " | ".join(line.item for line in p.lines)
    for expected in EXPECTED_LINES[bp.topology]:
        assert expected in items
    assert p.fits_budget is True, f"catalog blueprint {bp.name} does not fit its own budget: {p.total_usd:.2f}"


def test_seed_paper_figure_96_hours_of_p3_2xlarge():
    bp = load([p for p in CATALOG if p.stem == "bert-large-ec2-gpu"][0])
    p = plan(bp, hours=96)
    ec2 = [line for line in p.lines if line.item.startswith("EC2 p3.2xlarge")][0]
    assert (ec2.quantity, ec2.unit_usd) == (96, 3.06)
    assert round(ec2.usd, 2) == 293.76
    flop_based = plan(bp)
    assert flop_based.wall_s != 96 * 3600  # the FLOP-based estimate is the planner's own, not the paper's


def test_flops_per_token_follows_6n_plus_attention():
    gpt2 = get_preset("gpt2-small")
    n = gpt2.param_count() - gpt2.n_positions * gpt2.d_model
    assert flops_per_token(gpt2, 1024) == 6 * n + 12 * 12 * 768 * 1024
    bp = loads("name: demo-run\ncloud: aws\ntopology: gpu-node\ntraining: {steps: 100}\n")
    twice = loads("name: demo-run\ncloud: aws\ntopology: gpu-node\ntraining: {steps: 200}\n")
    assert plan(twice).flops == 2 * plan(bp).flops
    assert plan(twice).train_s == pytest.approx(2 * plan(bp).train_s)


def test_legs_fit_step_functions_history_then_continue_as_new():
    base = "name: demo-run\ncloud: aws\ntopology: lambda-steps\ntraining: {steps: 200000, batch_size: 64}\n"
    p = plan(loads(base + "lambda: {timeout_s: 30, leg_margin_s: 5, retries: 3}\n"))
    # 25 events per leg on its worst-case path (tests/kit/test_sfn_accounting.py reads them off the
    # synthesized state machine), plus 3 per retry
    assert p.legs_per_execution == (25_000 - EVENTS_RESERVED) // (25 + 3 * 3)
    assert p.executions == -(-p.legs // p.legs_per_execution) and p.executions >= 2
    no_retries = plan(loads(base + "lambda: {timeout_s: 30, leg_margin_s: 5, retries: 0}\n"))
    assert no_retries.legs_per_execution == (25_000 - EVENTS_RESERVED) // 25


def test_a_step_longer_than_a_leg_is_refused_with_numbers():
    bp = loads("name: demo-run\ncloud: aws\ntopology: lambda-steps\n"
               "training: {preset: bert-base, batch_size: 64, micro_batch_size: 8, seq_len: 128}\n"
               "lambda: {memory_mb: 4096, timeout_s: 30, leg_margin_s: 5}\n")
    with pytest.raises(RelayError, match=r"one bert-base step takes ~\d+ s at 2.32 vCPU .* no leg could ever commit"):
        plan(bp)


def test_budget_verdict_and_spot_is_cheaper():
    over = loads("name: demo-run\ncloud: aws\ntopology: gpu-node\nbudget_usd: 0.01\ntraining: {steps: 5000}\n")
    p = plan(over)
    assert p.fits_budget is False
    spot = plan(loads("name: demo-run\ncloud: aws\ntopology: gpu-node\ngpu: {spot: true}\ntraining: {steps: 5000}\n"))
    assert spot.total_usd < p.total_usd
    assert p.alternative["spot instances"] < p.alternative["on-demand instances"]


def test_calibration_changes_cpu_throughput(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"cpu_flops_per_vcpu": 60e9, "measured": "test"}))
    devices = load_devices(path)
    bp = loads("name: demo-run\ncloud: aws\ntopology: lambda-steps\n")
    assert plan(bp, devices).train_s == pytest.approx(plan(bp, Devices()).train_s / 2)
    path.write_text("{broken")
    with pytest.raises(RelayError, match="not a calibration file"):
        load_devices(path)


def test_prices_have_date_and_source():
    assert prices.AS_OF
    assert all(p.source.startswith("[") and p.usd >= 0 for p in prices.PRICES.values())


def test_plan_cli_text_json_and_compare(tmp_path, capsys):
    tiny = [p for p in CATALOG if p.stem == "tiny-gpt-lambda-steps"][0]
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "plan", str(tiny), "--json"],
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    assert data["topology"] == "lambda-steps" and data["legs"] >= 2 and data["prices_as_of"] == prices.AS_OF
    chart = tmp_path / "cmp.png"
    big = [p for p in CATALOG if p.stem == "gpt2-small-gce-gpu"][0]
    assert main(["plan", "--compare", str(big), str(tiny), str(CATALOG[0]), "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "compare: gpt2-small" in out
    tiny_row = [line for line in out.splitlines() if line.strip().startswith("tiny-gpt-lambda-steps")][0]
    assert "does not fit" in tiny_row and "gpt2-small training needs" in tiny_row
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibrate_measures_real_steps_and_the_plan_uses_them(tmp_path):
    tiny = [p for p in CATALOG if p.stem == "tiny-gpt-lambda-steps"][0]
    cal = tmp_path / "cal.json"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "plan", str(tiny), "--calibrate", "--calibration",
                           str(cal), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(cal.read_text())
    assert saved["preset"] == "tiny-gpt" and saved["step_seconds"] > 0 and saved["cpu_flops_per_vcpu"] > 0
    data = json.loads(proc.stdout)
    assert data["devices"].startswith("calibrated")
    assert data["worker_flops"] == pytest.approx(saved["cpu_flops_per_vcpu"] * 3538 / 1769)


def test_plan_reports_the_epochs_its_steps_cover_when_the_token_count_is_known(stdlib_dataset):
    from relaytrain_runtime.data import read_manifest
    from relaytrain_runtime.store import open_store

    url = f"file://{stdlib_dataset}"
    train = sum(s["tokens"] for s in read_manifest(open_store(url))["splits"]["train"])
    training = "training: {preset: tiny-gpt, steps: 400, batch_size: 8, seq_len: 64"
    known = plan(loads(f"name: demo-run\ncloud: aws\ntopology: gpu-node\n{training}, dataset: '{url}'}}\n"))
    assert known.epochs == pytest.approx(400 * 8 / (train // 64))  # samples drawn / windows in the train split
    assert any(f"{known.epochs:.3f} epoch(s)" in note for note in known.notes)
    assert known.epochs_basis == f"{url}'s manifest"
    remote = (f"name: demo-run\ncloud: aws\ntopology: gpu-node\ndataset: {{bucket: corp}}\n"
              f"{training}, dataset: 's3://corp/data/x'}}\n")
    unknown = plan(loads(remote))  # a remote dataset is not read
    assert unknown.epochs is None and any("epochs unknown" in note and "--train-tokens N" in note
                                          for note in unknown.notes)
    assert plan(loads(remote), train_tokens=64_000).epochs == pytest.approx(400 * 8 / 1000)


def test_plan_estimates_the_stdlib_epochs_from_its_known_size(stdlib_dataset):
    from relaytrain_runtime.data import read_manifest
    from relaytrain_runtime.store import open_store

    train = sum(s["tokens"] for s in read_manifest(open_store(str(stdlib_dataset)))["splits"]["train"])
    spec = loads("name: demo-run\ncloud: aws\ntopology: gpu-node\n"  # the fixture's corpus and vocabulary
                 "training: {preset: tiny-gpt, steps: 400, batch_size: 8, seq_len: 64}\n")
    estimate = plan(spec)
    assert estimate.epochs == pytest.approx(400 * 8 / (train // 64), rel=0.02)  # the built dataset's count
    assert estimate.epochs_basis.startswith("estimated: the stdlib train split's")
    hybrid = plan(loads("name: demo-run\ncloud: aws\ntopology: hybrid\ngpu: {}\npreprocess: {}\nevaluate: {}\n"
                        "training: {preset: tiny-gpt, steps: 400, batch_size: 8, seq_len: 64}\n"))
    assert hybrid.epochs is None and "preprocesses from dataset.raw_prefix" in hybrid.epochs_basis  # not stdlib


def test_function_shards_lora_exchanges_only_the_adapters():
    """A LoRA run's shards exchange the adapters' gradients (the runtime's model_tensors), not the whole model's."""
    from relaytrain_runtime.throughput import trainable_params

    text = ("name: demo-run\ncloud: gcp\ntopology: function-shards\n"
            "functions: {shards: 4, vcpu: 2, memory_gib: 8, timeout_s: 900, sync: gradients}\n"
            "training: {preset: smollm-135m, steps: 100, batch_size: 8, seq_len: 256%s}\n")
    full, lora = loads(text % ""), loads(text % ", finetune: lora, lora_rank: 8")
    model = get_preset("smollm-135m")
    adapters, every = trainable_params(model, lora.training), model.param_count()
    assert 0 < adapters < every / 50

    def exchanged(bp) -> str:
        return next(n for n in plan(bp).notes if "exchange" in n)

    assert f"exchange {adapters * 4 / 1e6:.0f} MB per shard" in exchanged(lora)
    assert f"exchange {every * 4 / 1e6:.0f} MB per shard" in exchanged(full)
    assert plan(lora).total_usd < plan(full).total_usd


def test_an_unset_precision_is_planned_as_the_gpus_default_mixed_precision():
    """The runtime trains an unset precision in 16-bit mixed precision on CUDA (docs/GPU.md): so does the plan."""
    text = "name: demo-run\ncloud: aws\ntopology: gpu-node\ngpu: {instance_type: %s}\ntraining: {steps: 5000%s}\n"
    for instance, mixed in (("g5.xlarge", "bf16-mixed"), ("p3.2xlarge", "fp16-mixed")):
        unset, default = plan(loads(text % (instance, ""))), plan(loads(text % (instance, f", precision: {mixed}")))
        fp32 = plan(loads(text % (instance, ", precision: fp32")))
        assert unset.train_s == pytest.approx(default.train_s) and unset.train_s < fp32.train_s / 2, instance
