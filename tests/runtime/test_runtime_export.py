"""Export: the Hugging Face directory loads with `transformers` and scores held-out tokens like the runtime."""

import subprocess
import sys

import pytest
import torch

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import eval_batch, open_dataset
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, evaluate, restore

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("preset,auto", [("tiny-gpt", "AutoModelForCausalLM"), ("tiny-bert", "AutoModelForMaskedLM")])
def test_exported_model_matches_runtime_loss(tiny_run, tmp_path, preset, auto):
    url = tiny_run(preset=preset, steps=6, eval_batches=3)
    status = run_leg(url)
    out = tmp_path / "hf"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "export", "--store", url, "--out", str(out),
                           "--format", "hf"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    hf = getattr(transformers, auto).from_pretrained(str(out)).eval()
    expected_arch = "GPT2LMHeadModel" if preset == "tiny-gpt" else "BertForMaskedLM"
    assert type(hf).__name__ == expected_arch

    store = open_store(url)
    baton = Baton(store)
    spec = baton.spec()
    dataset = open_dataset(store, spec)
    model, optimizer = build(spec)
    restore(model, optimizer, baton.resume()[1])
    runtime_loss = evaluate(model, spec, dataset)
    assert runtime_loss == pytest.approx(status["val_loss"], abs=1e-6)
    with torch.no_grad():
        losses = []
        for i in range(spec.eval_batches):
            b = eval_batch(spec, i, dataset)
            losses.append(hf(input_ids=b["input_ids"], labels=b["labels"]).loss.item())
    assert abs(sum(losses) / len(losses) - runtime_loss) < 1e-4

    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = "def add(a, b):\n    return a + b\n"
    assert tok.decode(tok(text)["input_ids"]) == text

    # exporting again replaces the earlier export in place
    proc = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "export", "--store", url, "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
