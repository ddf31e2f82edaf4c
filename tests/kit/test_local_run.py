"""`relaytrain run FILE --local`: each topology trains through the runtime in child processes and
reports what the measured seconds would cost on the cloud."""

import json
import subprocess
import sys

import pytest

from relaytrain import localrun, prices
from relaytrain.blueprint import loads
from relaytrain.cli import main
from relaytrain.plan.sfn import transitions_per_leg
from relaytrain_runtime import RelayError
from relaytrain_runtime.store import open_store

TINY = "training: {preset: tiny-gpt, steps: 4, batch_size: 2, seq_len: 16, eval_batches: 1, warmup_steps: 1}\n"


def _write(tmp_path, text, name="bp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lambda_steps_runs_legs_and_prices_the_measured_seconds(tmp_path):
    path = _write(tmp_path, "name: local-legs\ncloud: aws\ntopology: lambda-steps\n" + TINY
                  + "lambda: {memory_mb: 1769, timeout_s: 120, leg_margin_s: 4}\n")
    store = f"file://{tmp_path}/store"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "run", str(path), "--local", "--store", store, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "legs of 116 s (timeout_s 120 - leg_margin_s 4)" in proc.stderr
    assert "memory_mb 1769 = 1.00 vCPU of Lambda CPU share -> 1 local thread(s)" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["done"] is True and summary["step"] == 4
    legs = [json.loads(open_store(store).read(k)) for k in open_store(store).list("legs/")]
    assert len(legs) == summary["legs"] >= 1
    billed = sum(sum(leg["seconds"].values()) for leg in legs)
    assert summary["billed_seconds"] == pytest.approx([sum(leg["seconds"].values()) for leg in legs])
    expected = (billed * 1769 / 1024 * prices.price("lambda.gb_s.x86_64").usd
                + len(legs) * prices.price("lambda.request").usd
                + (transitions_per_leg(0) * len(legs) + 2) * prices.price("sfn.transition").usd)
    assert summary["cloud_cost_usd"] == pytest.approx(expected)
    assert "Lambda compute (x86_64, 1769 MB)" in proc.stderr and "Step Functions transitions" in proc.stderr


def test_gpu_node_runs_one_process_with_checkpoints(tmp_path, capsys):
    path = _write(tmp_path, "name: local-node\ncloud: aws\ntopology: gpu-node\n" + TINY
                  + "gpu: {instance_type: g4dn.xlarge, spot: true, checkpoint_every_s: 60}\n")
    store = f"file://{tmp_path}/store"
    assert main(["run", str(path), "--local", "--store", store, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 4 and summary["done"] is True
    rate = prices.price("ec2.g4dn.xlarge.spot").usd
    assert summary["cloud_cost_usd"] == pytest.approx(rate * summary["wall_s"] / 3600)
    assert open_store(store).list("baton/")


def test_function_shards_without_the_shards_runner_is_one_clear_line(monkeypatch):
    bp = loads("name: local-shards\ncloud: gcp\ntopology: function-shards\n")
    monkeypatch.setitem(localrun.RUNNERS, "function-shards", "relaytrain.localrun.no_such_module")
    with pytest.raises(RelayError, match="running function-shards locally needs relaytrain.localrun.no_such_module"):
        localrun.run_local(bp, "file:///tmp/never-written")


def test_bad_store_url_fails_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "name: local-legs\ncloud: aws\ntopology: lambda-steps\n")
    assert main(["run", str(path), "--local", "--store", "ftp://host/x"]) == 2
    assert "unsupported scheme 'ftp'" in capsys.readouterr().err
    assert main(["run", str(path)]) == 2
    assert "needs --local" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bp.yaml"]


def test_hybrid_preprocesses_trains_and_evaluates(tmp_path, capsys):
    path = _write(tmp_path, "name: local-hybrid\ncloud: aws\ntopology: hybrid\n" + TINY
                  + "preprocess: {memory_mb: 1769, ephemeral_mb: 1024}\n"
                  + "gpu: {instance_type: g4dn.xlarge, checkpoint_every_s: 60}\nevaluate: {memory_mb: 1769}\n")
    store = f"file://{tmp_path}/store"
    assert main(["run", str(path), "--local", "--store", store, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    s = open_store(store)
    assert json.loads(s.read("spec.json"))["dataset"] == f"{s.url}/dataset"  # trained on the preprocessed data
    assert s.exists("dataset/data/manifest.json") and s.list("raw/")
    assert summary["status"]["step"] == 4 and summary["evaluation"]["loss"] > 0
    assert summary["evaluation"]["weights_sha256"] == summary["status"]["weights_sha256"]
    assert summary["cloud_cost_usd"] > 0


def test_function_shards_runs_through_the_shards_runner(tmp_path, capsys):
    path = _write(tmp_path, "name: local-shards\ncloud: gcp\ntopology: function-shards\n"
                  "training: {preset: tiny-gpt, steps: 1, batch_size: 4, seq_len: 16, eval_batches: 1}\n"
                  "functions: {shards: 2, vcpu: 1, memory_gib: 2, timeout_s: 300}\n")
    assert main(["run", str(path), "--local", "--store", f"file://{tmp_path}/store", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["done"] is True and summary["rounds"] == 1
    busy = summary["shard_seconds"] + summary["reduce_seconds"]
    expected = (busy * (prices.price("gcf.vcpu_s").usd + 2 * prices.price("gcf.gib_s").usd)
                + 3 * prices.price("gcf.request").usd + 6 * prices.price("workflows.step").usd)
    assert summary["cloud_cost_usd"] == pytest.approx(expected)
    assert "Cloud Workflows steps" in captured.err


def test_hybrid_preprocessing_reads_the_blueprints_format_and_field(tmp_path):
    import sysconfig
    from pathlib import Path

    from relaytrain.localrun.hybrid import preprocess_local
    from relaytrain_runtime.data import read_manifest
    from relaytrain_runtime.data.tokens import load_stored

    bodies = [p.read_text() for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
              if 3000 < p.stat().st_size < 9000][:12]
    store = open_store(f"file://{tmp_path}/store")
    records = "".join(json.dumps({"text": "NOT THIS FIELD", "body": b}) + "\n" for b in bodies)
    store.write("raw/corpus.jsonl", records.encode())
    bp = loads("name: local-hybrid\ncloud: aws\ntopology: hybrid\n" + TINY
               + "dataset: {format: jsonl, field: body, vocab_size: 512, val_fraction: 0}\n"
               + "preprocess: {memory_mb: 1769}\ngpu: {instance_type: g4dn.xlarge}\nevaluate: {}\n", "bp.yaml")
    dataset_url, _ = preprocess_local(bp, store.url)
    ds = open_store(dataset_url)
    manifest = read_manifest(ds)
    assert manifest["vocab_size"] == 512 and manifest["corpus"]["format"] == "jsonl"
    assert manifest["corpus"]["documents"]["train"] == len(bodies)
    import numpy as np

    views = [(s["name"], s.get("start", 0), s.get("stop", s["tokens"])) for split in ("train", "val")
             for s in manifest["splits"][split]]
    ids = np.concatenate([np.frombuffer(ds.read(name), dtype=manifest["dtype"])[a:b] for name, a, b in views])
    text = load_stored(ds).tokenizer.decode(ids.tolist(), skip_special_tokens=False)
    assert text == "".join(b + "<|endoftext|>" for b in bodies)  # one record per document, from `body` only
