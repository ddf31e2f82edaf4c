"""Pretrained starts, full fine-tuning and LoRA: a tiny Llama directory written by the test (random weights,
save_pretrained; nothing downloaded), copied into the store once, trained in legs cut anywhere (bitwise equal
to one uninterrupted run), exported merged or as a PEFT adapter, and bad directories refused in one line."""

import json
import random
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.keys import BASE_PREFIX
from relaytrain_runtime.data import EOS, MASK, PAD, eval_batch, open_dataset
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.pretrained import prepare_spec
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, evaluate

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

RUN = dict(steps=6, seed=7, batch_size=4, seq_len=32, eval_batches=2, lr=1e-3, warmup_steps=2)


def _write_pretrained(root, stdlib_dataset, *, shard: bool = False, vocab: int = 4096):
    from relaytrain_runtime.model import transformers_config
    from relaytrain_runtime.presets import get_preset

    cfg = replace(get_preset("tiny-llama"), vocab_size=vocab)
    torch.manual_seed(123)
    model = transformers.LlamaForCausalLM(transformers_config(cfg, eos_id=0, pad_id=1))
    model.save_pretrained(str(root), max_shard_size="1MB" if shard else "5GB")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(stdlib_dataset / "data" / "tokenizer.json"),
                                               eos_token=EOS, pad_token=PAD, mask_token=MASK)
    tok.save_pretrained(str(root))
    return root


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory, stdlib_dataset):
    root = tmp_path_factory.mktemp("pretrained")
    return {"single": _write_pretrained(root / "single", stdlib_dataset),
            "sharded": _write_pretrained(root / "sharded", stdlib_dataset, shard=True)}


def _run(tmp_path, stdlib_dataset, init_from, name, **overrides) -> str:
    """A store with the dataset copied in (same tokenizer as the pretrained one) and the prepared spec."""
    root = tmp_path / name
    shutil.copytree(stdlib_dataset / "data", root / "data")
    store = open_store(str(root))
    spec = prepare_spec(store, RunSpec(init_from=str(init_from), **{**RUN, **overrides}))
    Baton(store).init(spec)
    return store.url


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "relaytrain", *args], capture_output=True, text=True)


def _one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[transformers]")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("finetune,layout", [("lora", "single"), ("full", "sharded")])
def test_legs_cut_anywhere_equal_one_run(tmp_path, stdlib_dataset, pretrained_dirs, finetune, layout):
    src = pretrained_dirs[layout]
    whole = _run(tmp_path, stdlib_dataset, src, "whole", finetune=finetune)
    assert run_leg(whole)["done"]
    reference = Baton(open_store(whole)).latest()
    rng = random.Random(finetune)
    url = _run(tmp_path, stdlib_dataset, src, "legs", finetune=finetune)
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
])
def test_bad_directories_are_one_line_and_write_nothing(tmp_path, stdlib_dataset, pretrained_dirs, case, needles,
                                                        extra):
    src = tmp_path / "src"
    if case == "big-vocab":
        _write_pretrained(src, stdlib_dataset, vocab=512)
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
