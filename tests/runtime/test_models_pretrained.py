"""Pretrained starts, full fine-tuning and LoRA: a tiny Llama directory written by the test (random weights,
save_pretrained; nothing downloaded), copied into the store once, trained in legs cut anywhere (bitwise equal
to one uninterrupted run), exported merged or as a PEFT adapter, and bad directories refused in one line."""

import json
import random
import shutil
import subprocess
import sys

import peft
import pytest
import torch
import transformers  # runtime dependencies: a missing one must fail, not skip

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.keys import BASE_PREFIX
from relaytrain_runtime.data import EOS, eval_batch, open_dataset
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.presets import get_preset
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, evaluate
from tests.fixtures.pretrained import write_pretrained


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "relaytrain", *args], capture_output=True, text=True)


def _one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("finetune,layout", [("lora", "single"), ("full", "sharded")])
def test_legs_cut_anywhere_equal_one_run(pretrained_run, pretrained_dirs, finetune, layout):
    src = pretrained_dirs[layout]
    whole = pretrained_run(src, "whole", finetune=finetune)
    assert run_leg(whole)["done"]
    reference = Baton(open_store(whole)).latest()
    rng = random.Random(finetune)
    url = pretrained_run(src, "legs", finetune=finetune)
    cuts = []
    while not (s := run_leg(url, max_steps=rng.choice([1, 2, 3]) if cuts else 1))["done"]:  # a 1-step leg first
        cuts.append(s["leg_steps"])
    assert 1 in cuts
    final = Baton(open_store(url)).latest()
    assert final["weights_sha256"] == reference["weights_sha256"], f"legs {cuts} diverged"

    store = open_store(url)
    spec = Baton(store).spec()
    assert spec.init_sha256 and spec.model.family == "llama"
    base = [k for k in store.list(BASE_PREFIX)]
    assert {k.rsplit("/", 1)[1] for k in base} >= {"config.json", "tokenizer.json", "manifest.json"}
    state = Baton(store).load(final)
    names = set(state["weights"])
    if finetune == "lora":  # only the adapters (and their moments) are checkpointed
        assert names and all("lora_" in n for n in names)
        assert final["objects"]["weights"]["size"] < 0.2 * sum(
            len(store.read(k)) for k in base if k.endswith(".safetensors"))
    else:
        assert "model.embed_tokens.weight" in names and not any("lora_" in n for n in names)
    # training moved away from the pretrained weights
    model, _ = build(spec, store=store)
    start = {k: v.detach().clone() for k, v in model.hf.named_parameters() if k in names}
    assert any(not torch.equal(start[k], state["weights"][k]) for k in start)
    # a damaged base in the store is refused by digest, naming the object
    weights_key = sorted(k for k in base if k.endswith(".safetensors"))[0]
    store.write(weights_key, store.read(weights_key)[:-8] + b"\0" * 8)
    with pytest.raises(RelayError, match="is corrupt"):
        build(spec, state if finetune == "lora" else None, store=store)


def _runtime_loss(url):
    store = open_store(url)
    baton = Baton(store)
    spec = baton.spec()
    model, _ = build(spec, baton.resume()[1], store=store)
    dataset = open_dataset(store, spec)
    return spec, dataset, evaluate(model, spec, dataset)


def _library_loss(model, spec, dataset):
    with torch.no_grad():
        losses = [model(input_ids=b["input_ids"], labels=b["labels"]).loss.item()
                  for b in (eval_batch(spec, i, dataset) for i in range(spec.eval_batches))]
    return sum(losses) / len(losses)


def test_cli_init_from_directory_then_export_merged_and_adapter(tmp_path, pretrained_dirs):
    src = pretrained_dirs["single"]
    url = f"file://{tmp_path / 'run'}"
    proc = _cli("init", "--store", url, "--init-from", f"file://{src}", "--steps", "3", "--batch-size", "2",
                "--seq-len", "32", "--eval-batches", "2", "--finetune", "lora", "--lora-rank", "4",
                "--lora-alpha", "8")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["created"] and info["init_sha256"]
    again = _cli("init", "--store", url, "--init-from", str(src), "--steps", "3", "--batch-size", "2",
                 "--seq-len", "32", "--eval-batches", "2", "--finetune", "lora", "--lora-rank", "4",
                 "--lora-alpha", "8")
    assert again.returncode == 0 and not json.loads(again.stdout.strip().splitlines()[-1])["created"], again.stderr
    assert run_leg(url)["done"]
    spec, dataset, runtime_loss = _runtime_loss(url)
    assert spec.lora_rank == 4 and dataset.special[EOS] == 0

    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert _cli("export", "--store", url, "--out", str(merged)).returncode == 0
    proc = _cli("export", "--store", url, "--out", str(adapter), "--adapter", "--gen", "1")
    assert proc.returncode == 0, proc.stderr
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert abs(_library_loss(hf, spec, dataset) - runtime_loss) < 1e-4
    base = transformers.AutoModelForCausalLM.from_pretrained(str(src))
    tuned = peft.PeftModel.from_pretrained(base, str(adapter)).eval()
    assert abs(_library_loss(tuned, spec, dataset) - runtime_loss) < 1e-4
    tok = transformers.AutoTokenizer.from_pretrained(str(merged))
    assert tok.decode(tok("def f(x):\n    return x\n")["input_ids"]) == "def f(x):\n    return x\n"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _break_arch(path):
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "model_type": "mamba"}))


@pytest.mark.parametrize("case,needles,extra", [
    ("not-a-model", ["is not a model directory", "config.json"], []),
    ("missing-weights", ["has no weights", "model.safetensors"], []),
    ("truncated", ["is truncated"], []),
    ("unsupported", ["unsupported architecture", "mamba", "supported: gpt2, bert, llama, qwen2"], []),
    ("lora-targets", ["lora_targets: nothing_proj match no module", "q_proj"],
     ["--finetune", "lora", "--lora-targets", "nothing_proj"]),
    ("big-vocab", ["tokens, more than the model's vocab_size 512"], []),
    ("shape-mismatch", ["model_shape: differs from", "n_layers (3 vs 4)"],
     ["--model-shape", json.dumps({**get_preset("tiny-llama").to_dict(), "n_layers": 3})]),
])
def test_bad_directories_are_one_line_and_write_nothing(tmp_path, stdlib_dataset, pretrained_dirs, case, needles,
                                                        extra):
    src = tmp_path / "src"
    if case == "big-vocab":
        write_pretrained(src, stdlib_dataset / "data" / "tokenizer.json", vocab=512)
    else:
        shutil.copytree(pretrained_dirs["single"], src)
    {"not-a-model": lambda: (src / "config.json").unlink(),
     "missing-weights": lambda: (src / "model.safetensors").unlink(),
     "truncated": lambda: _truncate(src / "model.safetensors"),
     "unsupported": lambda: _break_arch(src)}.get(case, lambda: None)()
    store = tmp_path / "run"
    proc = _cli("init", "--store", f"file://{store}", "--init-from", str(src), "--steps", "3", *extra)
    _one_line_error(proc, *needles)
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_a_prepared_run_accepts_the_workers_unprepared_spec_and_nothing_else(pretrained_run, pretrained_dirs):
    """The operator prepares a pretrained start (`relaytrain init --init-from`); the deployed workers are handed
    the blueprint's spec, which has no base digest yet: that run continues. A spec that differs in any other
    field, or names another model, is refused, and nothing of a base is ever copied from the event's path."""
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.contract.keys import BASE_PREFIX
    from relaytrain_runtime.spec import RunSpec
    from relaytrain_runtime.store import open_store
    from tests.fixtures.pretrained import PRETRAINED_RUN

    src = pretrained_dirs["single"]
    url = pretrained_run(src, "prepared")
    store = open_store(url)
    bases = sorted(store.list(BASE_PREFIX))
    as_blueprint = RunSpec(init_from=f"file://{src}", **PRETRAINED_RUN)
    assert Baton(store).init(as_blueprint) is False  # the prepared run, continued
    assert run_leg(url, spec=as_blueprint.to_dict(), max_steps=1)["leg_steps"] == 1
    for other in (RunSpec(init_from=f"file://{src}", **{**PRETRAINED_RUN, "lr": 0.5}),
                  RunSpec(init_from=f"file://{pretrained_dirs['sharded']}", **PRETRAINED_RUN)):
        with pytest.raises(RelayError, match="must be prepared first"):
            Baton(store).init(other)
    assert sorted(store.list(BASE_PREFIX)) == bases
