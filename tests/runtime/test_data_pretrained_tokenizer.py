"""`--tokenizer pretrained`: the tokenizer of the model the run starts from, given by `--init-from DIR`, by a
blueprint's training.init_from (the kit's `--blueprint`), or in the hybrid plan event by the run's stored base
(never a model path from the event); without a model, one clear line saying what to add."""

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from relaytrain_runtime.cli import main
from relaytrain_runtime.contract.events import BadEvent
from relaytrain_runtime.data import TOKENIZER_KEY, read_manifest
from relaytrain_runtime.preprocess import preprocess_op
from relaytrain_runtime.store import StoreError, open_store
from relaytrain_runtime.store.confine import ALLOW_FILE_SOURCES_ENV, RUN_PREFIX_ENV

DOCS = [p.read_text() for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
        if 2000 < p.stat().st_size < 8000][:8]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained-corpus")
    for i, doc in enumerate(DOCS):
        (root / f"doc-{i}.txt").write_text(doc)
    return root


def _tokens(store_url: str) -> np.ndarray:
    store = open_store(store_url)
    manifest = read_manifest(store)
    parts = [np.frombuffer(store.read(s["name"]), dtype=manifest["dtype"])[s.get("start", 0):s.get("stop", s["tokens"])]
             for split in ("train", "val") for s in manifest["splits"][split]]
    return np.concatenate(parts)


def _expected(model_dir: Path) -> np.ndarray:
    """The documents as the model's own tokenizer encodes them, each followed by its eos token."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(model_dir))
    ids = []
    for doc in DOCS:
        ids += hf(doc, add_special_tokens=False)["input_ids"] + [hf.eos_token_id]
    return np.asarray(ids)


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_init_from_gives_the_models_own_tokens(corpus, pretrained_dirs, tmp_path):
    model = pretrained_dirs["single"]
    args = ["data", "prepare", str(corpus), "--store", str(tmp_path / "ds"), "--val-fraction", "0"]
    assert main([*args, "--tokenizer", "pretrained", "--init-from", str(model)]) == 0
    store = open_store(str(tmp_path / "ds"))
    manifest = read_manifest(store)
    assert manifest["corpus"]["tokenizer"] == "pretrained"
    assert json.loads(store.read(TOKENIZER_KEY))["model"] == json.loads((model / "tokenizer.json").read_text())["model"]
    assert np.array_equal(_tokens(store.url), _expected(model))  # documents in key order


def test_without_a_model_one_line_says_what_to_add(corpus, tmp_path, capsys):
    from relaytrain.cli import main as kit_main

    args = ["data", "prepare", str(corpus), "--store", str(tmp_path / "ds"), "--tokenizer", "pretrained"]
    assert main(args) == 2
    _one_line(capsys, "--tokenizer pretrained", "add --init-from DIR")
    assert kit_main(args) == 2
    _one_line(capsys, "add --blueprint FILE (its training.init_from) or --init-from DIR")
    assert not open_store(str(tmp_path / "ds")).list()


def test_the_kit_takes_the_model_from_the_blueprint(corpus, pretrained_dirs, tmp_path, capsys):
    from relaytrain.cli import main as kit_main

    model = pretrained_dirs["single"]
    text = ("name: pre-tok\ncloud: aws\ntopology: gpu-node\ngpu: {instance_type: g4dn.xlarge}\n"
            f"training: {{preset: tiny-llama, init_from: {model}, steps: 2}}\n")
    (tmp_path / "bp.yaml").write_text(text)
    args = ["data", "prepare", str(corpus), "--store", f"file://{tmp_path}/ds", "--val-fraction", "0",
            "--tokenizer", "pretrained", "--blueprint", str(tmp_path / "bp.yaml")]
    assert kit_main(args) == 0
    assert read_manifest(open_store(str(tmp_path / "ds")))["corpus"]["model"] == open_store(str(model)).url
    (tmp_path / "bare.yaml").write_text(text.replace(f"init_from: {model}, ", ""))
    capsys.readouterr()
    assert kit_main([*args[:-1], str(tmp_path / "bare.yaml"), "--store", f"file://{tmp_path}/ds2"]) == 2
    _one_line(capsys, "bare.yaml has no training.init_from", "add --init-from DIR")


def test_the_plan_event_uses_the_runs_stored_base_confined(corpus, pretrained_dirs, pretrained_run, tmp_path,
                                                           monkeypatch):
    run = pretrained_run(pretrained_dirs["single"], "run")
    monkeypatch.setenv(ALLOW_FILE_SOURCES_ENV, "1")
    event = {"op": "preprocess", "phase": "plan", "store": f"file://{tmp_path}/ds", "source": f"file://{corpus}",
             "tokenizer": "pretrained", "val_fraction": 0.0}
    with pytest.raises(BadEvent, match="run_store"):
        preprocess_op(event, 0)
    monkeypatch.setenv(RUN_PREFIX_ENV, f"file://{tmp_path}/elsewhere")
    with pytest.raises(StoreError, match="outside this deployment's run store prefix"):
        preprocess_op({**event, "run_store": run}, 0)
    assert not open_store(f"file://{tmp_path}/ds").list()
    monkeypatch.setenv(RUN_PREFIX_ENV, f"file://{tmp_path}")
    planned = preprocess_op({**event, "run_store": run}, 0)
    for item in planned["items"]:
        preprocess_op(item, 0)
    preprocess_op({"op": "preprocess", "phase": "manifest", "store": f"file://{tmp_path}/ds"}, 0)
    assert np.array_equal(_tokens(f"file://{tmp_path}/ds"), _expected(pretrained_dirs["single"]))
