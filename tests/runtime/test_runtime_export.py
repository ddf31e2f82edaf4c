"""Export: the Hugging Face directory loads with `transformers` and scores held-out tokens like the runtime."""

import subprocess
import sys

import pytest
import torch
import transformers  # a runtime dependency: a missing one must fail, not skip

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import eval_batch, open_dataset
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, evaluate, restore


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


def test_export_best_picks_the_lowest_validation_loss(tiny_run, tmp_path):
    """`export --best` writes the evaluated checkpoint with the lowest validation loss, which pruning kept even
    though it is not the latest; before any evaluation it refuses with one line."""
    import json
    import subprocess
    import sys

    from relaytrain_runtime.leg import run_leg

    def export(*flags: str) -> subprocess.CompletedProcess:
        out = tmp_path / ("out" + "".join(flags).replace("-", ""))
        return subprocess.run([sys.executable, "-m", "relaytrain_runtime", "export", "--store", url, "--out",
                               str(out), *flags], capture_output=True, text=True)

    # a constant lr of 0.1 without warmup overshoots, so the step-4 evaluation is the best one
    url = tiny_run(steps=9, eval_every=3, keep_last=1, lr=0.1, min_lr=0.1, warmup_steps=0, schedule="constant")
    refused = export("--best")
    assert refused.returncode == 2 and "no evaluated checkpoint" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    statuses = [run_leg(url, max_steps=n) for n in (2, 2, 2, 1, 2)]
    best = min((s for s in statuses if "val_loss" in s), key=lambda s: s["val_loss"])
    assert best["gen"] != statuses[-1]["gen"]
    results = {flags: export(*flags) for flags in (("--best",), ("--gen", str(best["gen"])), ())}
    assert all(r.returncode == 0 for r in results.values()), [r.stderr for r in results.values()]
    assert json.loads(results[("--best",)].stdout.splitlines()[-1])["best"] is True
    weights = {flags: (tmp_path / ("out" + "".join(flags).replace("-", "")) / "model.safetensors").read_bytes()
               for flags in results}
    assert weights[("--best",)] == weights[("--gen", str(best["gen"]))] != weights[()]
