"""Data: the stdlib dataset, verified shards, batches as pure functions of (seed, step, rank, world), MLM masking."""

import hashlib
import json

import numpy as np
import pytest
import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.data import (
    MANIFEST_KEY,
    DataError,
    batch,
    eval_batch,
    open_dataset,
    read_manifest,
    split_files,
    write_dataset,
)
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import TINY_SPEC


@pytest.fixture
def spec():
    return RunSpec(**TINY_SPEC)


def test_stdlib_manifest_records_counts_and_digests(stdlib_dataset):
    store = open_store(str(stdlib_dataset))
    manifest = read_manifest(store)
    assert manifest["vocab_size"] == 4096 and manifest["dtype"] == "uint16"
    assert manifest["corpus"]["name"] == "stdlib" and manifest["corpus"]["files"] > 100
    for shard in manifest["splits"]["train"] + manifest["splits"]["val"]:
        raw = store.read(shard["name"])
        assert hashlib.sha256(raw).hexdigest() == shard["sha256"] and len(raw) == 2 * shard["tokens"]
    # the unigram entropy baseline is below ln(V) and stored for the learning check
    assert 4.0 < manifest["unigram_entropy_nats"] < np.log(4096)
    assert store.read(manifest["tokenizer"]).startswith(b"{")


def test_batch_is_pure_and_world_independent(stdlib_dataset, spec):
    ds1 = open_dataset(open_store(str(stdlib_dataset)), spec)
    ds2 = open_dataset(open_store(str(stdlib_dataset)), spec)
    a, b = batch(spec, 5, 0, 1, ds1), batch(spec, 5, 0, 1, ds2)
    assert torch.equal(a["input_ids"], b["input_ids"]) and a["input_ids"].shape == (4, 32)
    assert not torch.equal(a["input_ids"], batch(spec, 6, 0, 1, ds1)["input_ids"])
    parts = [batch(spec, 5, r, 4, ds1)["input_ids"] for r in range(4)]
    assert torch.equal(torch.cat(parts), a["input_ids"])
    other_seed = RunSpec(**{**TINY_SPEC, "seed": 8})
    assert not torch.equal(batch(other_seed, 5, 0, 1, ds1)["input_ids"], a["input_ids"])
    with pytest.raises(RelayError, match="world must divide batch_size 4"):
        batch(spec, 5, 0, 3, ds1)


def test_eval_batches_come_from_the_held_out_split(stdlib_dataset, spec):
    ds = open_dataset(open_store(str(stdlib_dataset)), spec)
    val = ds.splits["val"].read(0, ds.tokens("val"))[0]
    window = eval_batch(spec, 0, ds)["input_ids"][0].numpy()
    starts = np.flatnonzero(val[: len(val) - 31] == window[0])
    assert any(np.array_equal(val[s:s + 32], window) for s in starts)


def test_mlm_masking_is_keyed_and_sane(stdlib_dataset):
    spec = RunSpec(**{**TINY_SPEC, "preset": "tiny-bert", "batch_size": 16, "seq_len": 128})
    ds = open_dataset(open_store(str(stdlib_dataset)), spec)
    b = batch(spec, 3, 0, 1, ds)
    again = batch(spec, 3, 0, 1, ds)
    assert torch.equal(b["input_ids"], again["input_ids"]) and torch.equal(b["labels"], again["labels"])
    chosen = b["labels"] != -100
    assert 0.10 < chosen.float().mean().item() < 0.20
    mask_id = ds.special["<mask>"]
    masked = b["input_ids"] == mask_id
    assert masked.any() and bool((chosen | ~masked).all())  # every <mask> is a chosen position
    assert 0.7 < masked[chosen].float().mean().item() < 0.9
    # the same (seed, step) samples the same windows for either family: those are the original tokens
    original = batch(RunSpec(**{**TINY_SPEC, "batch_size": 16, "seq_len": 128}), 3, 0, 1, ds)["input_ids"]
    assert torch.equal(b["input_ids"][~chosen], original[~chosen])
    assert torch.equal(b["labels"][chosen], original[chosen])


def test_zstd_shards_round_trip_and_corruption_is_detected(tmp_path, spec):
    store = open_store(str(tmp_path / "ds"))
    texts = split_files([(f"f{i}.py", f"def f{i}(x):\n    return x * {i}\n" * 40) for i in range(60)])
    manifest = write_dataset(store, texts, 300, corpus={"name": "test"}, compression="zstd", shard_tokens=5000)
    assert all(s["name"].endswith(".zst") and s["compression"] == "zstd" for s in manifest["splits"]["train"])
    assert len(manifest["splits"]["train"]) > 1
    zspec = RunSpec(**{**TINY_SPEC, "dataset": store.url})
    ds = open_dataset(store, zspec, str(tmp_path / "cache"))
    assert ds.tokens("train") == sum(s["tokens"] for s in manifest["splits"]["train"])
    plain = open_store(str(tmp_path / "plain"))
    write_dataset(plain, texts, 300, corpus={"name": "test"}, shard_tokens=5000)
    unpacked = open_dataset(plain, RunSpec(**{**TINY_SPEC, "dataset": plain.url}), str(tmp_path / "cache"))
    assert np.array_equal(ds.splits["train"].read(0, ds.tokens("train"))[0],
                          unpacked.splits["train"].read(0, ds.tokens("train"))[0])
    name = manifest["splits"]["train"][0]["name"]
    raw = bytearray(store.read(name))
    raw[len(raw) // 2] ^= 0xFF
    store.write(name, bytes(raw))
    with pytest.raises(DataError, match=f"{name} is corrupt"):  # found when the shard is first read
        open_dataset(store, zspec, str(tmp_path / "cache3")).splits["train"].read(0, 1)


def test_corrupt_dataset_manifest_is_one_clear_error(tmp_path):
    store = open_store(str(tmp_path))
    store.write(MANIFEST_KEY, b"{not json")
    with pytest.raises(DataError, match="data/manifest.json is corrupt"):
        read_manifest(store)
    store.write(MANIFEST_KEY, json.dumps({"splits": {}}).encode())
    with pytest.raises(DataError, match="is corrupt"):
        read_manifest(store)
