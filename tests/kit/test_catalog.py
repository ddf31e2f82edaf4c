"""The fine-tuning catalog: each fine-tuning blueprint has a tiny twin of the same topology and mode, and
each twin runs end to end with `relaytrain run FILE --local` from a pretrained tiny-llama directory the test
writes (save_pretrained; nothing downloaded). The hybrid plan charges what the pipeline runs."""

import json
import math
import shutil
import subprocess
import sys

import pytest

from relaytrain.blueprint import catalog_files, load
from relaytrain.plan import plan
from relaytrain.plan.report import usd
from relaytrain_runtime.contract.keys import BASE_PREFIX, CKPT_PREFIX, EVAL_PREFIX, SPEC_KEY
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from tests.fixtures.pretrained import write_pretrained

CATALOG = {p.stem: p for p in catalog_files()}
TWINS = {  # tiny twin -> the blueprint it stands in for
    "tiny-llama-lora-lambda-steps": "qwen05b-lora-lambda-steps",
    "tiny-llama-lora-function-shards": "qwen05b-lora-function-shards",
    "tiny-llama-full-ec2-gpu": "qwen05b-full-ec2-gpu",
}
SAME = ("cloud", "topology")


@pytest.mark.parametrize("twin", TWINS)
def test_each_fine_tune_has_a_tiny_twin_of_its_topology_and_mode(twin):
    tiny, full = load(CATALOG[twin]), load(CATALOG[TWINS[twin]])
    assert [getattr(tiny, f) for f in SAME] == [getattr(full, f) for f in SAME]
    assert tiny.training.finetune == full.training.finetune and tiny.training.parallelism == full.training.parallelism
    assert tiny.training.preset == "tiny-llama" and tiny.training.init_from
    assert full.training.init_from.startswith({"aws": "s3://", "gcp": "gs://"}[full.cloud])


def test_the_fsdp_blueprint_shards_the_1b_shape_over_one_8_gpu_node():
    bp = load(CATALOG["tinyllama-1b-fsdp-p4d"])
    assert (bp.training.preset, bp.training.parallelism, bp.gpu.nodes) == ("tinyllama-1.1b", "fsdp", 1)
    assert "8x" in plan(bp).workers


@pytest.fixture(scope="session")
def twin_root(tmp_path_factory, stdlib_dataset):
    """A directory holding pretrained/tiny-llama (the twins' relative init_from), with the stdlib dataset's
    tokenizer so every twin's store reuses the prepared dataset."""
    root = tmp_path_factory.mktemp("twins")
    write_pretrained(root / "pretrained" / "tiny-llama", stdlib_dataset / "data" / "tokenizer.json")
    return root


def _bytes(store, prefix: str, name: str) -> list[int]:
    return [len(store.read(k)) for k in store.list(prefix) if k.endswith("/" + name)]


@pytest.mark.parametrize("twin", TWINS)
def test_tiny_twin_runs_end_to_end_from_a_pretrained_directory(twin, twin_root, stdlib_dataset, tmp_path):
    shutil.copytree(stdlib_dataset / "data", tmp_path / "store" / "data")
    store_url = f"file://{tmp_path}/store"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "run", str(CATALOG[twin]), "--local", "--store",
                           store_url, "--json"], check=False, cwd=twin_root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    bp = load(CATALOG[twin])
    assert summary.get("done") is True or summary.get("status") == "done"
    assert summary["step"] == bp.training.steps
    assert math.isfinite(summary["val_loss"]) and summary["val_loss"] > 0
    assert summary["cloud_cost_usd"] > 0 and usd(summary["cloud_cost_usd"]) in proc.stderr  # the bill is printed

    store = open_store(store_url)
    spec = RunSpec.from_json(store.read(SPEC_KEY))
    assert spec.init_sha256 and spec.finetune == bp.training.finetune
    base = _bytes(store, BASE_PREFIX, "model.safetensors")
    weights = _bytes(store, CKPT_PREFIX, "weights.safetensors")
    assert len(base) == 1 and weights  # the base stored once, by digest; checkpoints committed
    if bp.training.finetune == "lora":  # only the adapters: far below a full checkpoint
        assert max(weights) * 20 < base[0]
    else:
        assert min(weights) * 2 > base[0]
    assert store.list(EVAL_PREFIX)


def _hybrid(steps_times: int = 1):
    bp = load(CATALOG["hybrid-aws"])
    return bp.model_copy(update={"training": bp.training.model_copy(update={"steps": steps_times * bp.training.steps})})


def _line(p, item: str):
    return next(line for line in p.lines if line.item == item)


def test_hybrid_plan_charges_one_evaluation_of_the_final_checkpoint_after_training():
    short, long = plan(_hybrid()), plan(_hybrid(4))
    # four times the training and its checkpoints (the preprocess fan-out and boot stay the same) ...
    assert long.train_s == pytest.approx(4 * short.train_s) and long.wall_s - short.wall_s > 2.5 * short.train_s
    evaluate = _line(short, "Lambda compute, evaluate")
    assert _line(long, "Lambda compute, evaluate").quantity == pytest.approx(evaluate.quantity)  # ... one evaluation

    bp = _hybrid()
    node = plan(bp.model_copy(update={"topology": "gpu-node", "preprocess": None, "evaluate": None}))
    evaluation_s = evaluate.quantity * 1024 / bp.evaluate.memory_mb
    assert short.wall_s - node.wall_s > evaluation_s  # its time follows training (plus the preprocess fan-out)
    assert any("one evaluation of the final checkpoint after training" in note for note in short.notes)
