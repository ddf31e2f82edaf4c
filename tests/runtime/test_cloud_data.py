"""Preprocess (fanned out one object per invocation) and evaluate, through the op registry, on S3."""

import json
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from relaytrain_runtime.handlers.ops import run_op
from relaytrain_runtime.store import open_store

SOURCES = sorted(p for p in Path(sysconfig.get_paths()["stdlib"]).glob("*.py") if p.stat().st_size > 8000)[:24]


def op(event):
    return run_op(event, time.time() + 300)


@pytest.fixture
def raw(s3_bucket):
    source = open_store(f"s3://{s3_bucket}/raw")
    for p in SOURCES:
        source.write(f"stdlib/{p.name}.txt", p.read_bytes())
    source.write("README.md", b"not part of the corpus")
    return f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/datasets/stdlib"


def test_preprocess_fan_out_then_train_and_evaluate(raw, tmp_path):
    source, dataset = raw
    planned = op({"op": "preprocess", "phase": "plan", "store": dataset, "source": source, "vocab_size": 2048,
                  "suffix": ".txt"})
    assert planned["count"] == len(SOURCES) == len(planned["items"])
    assert {i["key"] for i in planned["items"]} == {f"stdlib/{p.name}.txt" for p in SOURCES}

    with ThreadPoolExecutor(4) as pool:  # what a Distributed Map / Workflows parallel loop does
        done = list(pool.map(op, planned["items"]))
    assert all("error" not in d for d in done), done
    assert op(planned["items"][0]) == done[0]  # a retried invocation changes nothing
    result = op({"op": "preprocess", "phase": "manifest", "store": dataset})
    assert result["objects"] == len(SOURCES) and result["tokens"]["val"] > 0 and result["tokens"]["train"] > 0
    store = open_store(dataset)
    first = store.read("data/manifest.json")
    op({"op": "preprocess", "phase": "manifest", "store": dataset})
    assert store.read("data/manifest.json") == first  # deterministic
    manifest = json.loads(first)
    assert manifest["vocab_size"] == 2048 and manifest["dtype"] == "uint16"
    assert 0 < manifest["unigram_entropy_nats"] < 8

    # a run trains on it (dataset named in the spec), then the evaluate op scores the final checkpoint
    run = f"file://{tmp_path}/run"
    spec = {"preset": "tiny-gpt", "steps": 3, "batch_size": 4, "seq_len": 64, "eval_batches": 2, "dataset": dataset}
    leg = op({"store": run, "spec": spec})
    assert leg["done"], leg
    ev = op({"op": "evaluate", "store": run})
    assert ev["gen"] == leg["gen"] and ev["step"] == 3 and ev["weights_sha256"] == leg["weights_sha256"]
    assert ev["loss"] == leg["val_loss"]  # the same fixed held-out batches as the finishing leg
    assert json.loads(open_store(run).read(f"eval/{leg['gen']:08d}.json"))["perplexity"] == pytest.approx(
        2.718281828459045 ** ev["loss"])
    more = op({"op": "evaluate", "store": run, "gen": leg["gen"], "batches": 4, "split": "train"})
    assert more["batches"] == 4 and more["split"] == "train" and more["loss"] != ev["loss"]


def test_preprocess_and_evaluate_bad_events(raw, tmp_path):
    source, dataset = raw
    cases = [
        ({"op": "preprocess", "store": dataset}, "event field 'phase' is required"),
        ({"op": "preprocess", "store": dataset, "phase": "boil"}, "must be plan, shard or manifest"),
        ({"op": "preprocess", "store": dataset, "phase": "plan"}, "event field 'source' is required"),
        ({"op": "preprocess", "store": dataset, "phase": "plan", "source": source, "vocab_size": 10}, ">= 259"),
        ({"op": "preprocess", "store": dataset, "phase": "plan", "source": source, "suffix": ".none"},
         "no source objects under"),
        ({"op": "preprocess", "store": dataset, "source": source, "key": "stdlib/x.txt"},
         "data/tokenizer.json does not exist; run the 'plan' phase first"),
        ({"op": "preprocess", "store": dataset, "phase": "manifest"}, "no token parts"),
        ({"op": "evaluate", "store": f"file://{tmp_path}/none"}, "spec.json"),
        ({"op": "evaluate", "store": dataset, "gen": 0}, "event field 'gen' must be >= 1"),
    ]
    for event, message in cases:
        result = op(event)
        assert "error" in result and message in result["error"]["message"], (event, result)


def test_preprocess_verb_on_files(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    for p in SOURCES[:6]:
        (src / f"{p.name}.txt").write_bytes(p.read_bytes())
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "preprocess", "--source", f"file://{src}",
                          "--store", f"file://{tmp_path}/ds", "--vocab-size", "1024"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["objects"] == 6
    bad = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "preprocess", "--source", f"file://{tmp_path}/empty",
                          "--store", f"file://{tmp_path}/ds2"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no source objects under" in bad.stderr


def test_preprocess_fan_out_reads_parquet_and_chat_jsonl_zst_from_s3(s3_bucket, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    source = open_store(f"s3://{s3_bucket}/raw-mixed")
    texts = [p.read_text() for p in SOURCES[:8]]
    for i in range(2):
        pq.write_table(pa.table({"body": texts[i::2]}), tmp_path / f"{i}.parquet")
        source.write(f"tables/{i}.parquet", (tmp_path / f"{i}.parquet").read_bytes())
    chats = "".join(json.dumps({"messages": [{"role": "user", "content": f"Count to {i}."},
                                             {"role": "assistant", "content": " ".join(map(str, range(i)))}]}) + "\n"
                    for i in range(1, 200))
    source.write("chat/a.jsonl.zst", zstandard.ZstdCompressor().compress(chats.encode()))

    def fan_out(dataset, **plan):
        planned = op({"op": "preprocess", "phase": "plan", "store": dataset, "vocab_size": 1024, **plan})
        assert "error" not in planned, planned
        with ThreadPoolExecutor(2) as pool:
            assert all("error" not in d for d in pool.map(op, planned["items"]))
        return op({"op": "preprocess", "phase": "manifest", "store": dataset}), json.loads(
            open_store(dataset).read("data/manifest.json"))

    tables, manifest = fan_out(f"s3://{s3_bucket}/datasets/tables", source=f"s3://{s3_bucket}/raw-mixed/tables",
                               field="body")
    assert tables["objects"] == 2 and manifest["corpus"]["format"] == "parquet"
    assert manifest["corpus"]["documents"]["train"] + manifest["corpus"]["documents"]["val"] == len(texts)
    chat, manifest = fan_out(f"s3://{s3_bucket}/datasets/chat", source=f"s3://{s3_bucket}/raw-mixed/chat",
                             val_fraction=0.05)
    assert manifest["corpus"]["instruction"] and manifest["corpus"]["format"] == "jsonl"
    assert all("mask" in s for s in manifest["splits"]["train"] + manifest["splits"]["val"])
    bad = op({"op": "preprocess", "phase": "plan", "store": f"s3://{s3_bucket}/datasets/x", "vocab_size": 1024,
              "source": f"s3://{s3_bucket}/raw-mixed/tables", "field": "nope"})
    assert "tables/0.parquet: no column 'nope' (columns: body)" in bad["error"]["message"]
