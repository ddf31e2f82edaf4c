"""The shard cache's byte budget: least-recently-used shards are evicted, a shard being read never is, reads and
batches stay the same as with an unbounded cache, and the budget comes from the deployment's configuration."""

import numpy as np
import pytest

from relaytrain_runtime.data import batch, open_dataset, write_token_dataset
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import StoreError, open_store
from relaytrain_runtime.store.cache import BUDGET_ENV, ShardCache, cache_budget

SHARD_TOKENS, SHARDS = 1000, 20
SHARD_BYTES = 2 * SHARD_TOKENS  # uint16
BUDGET = 5000  # two shards and a half


@pytest.fixture(scope="module", params=[None, "zstd"])
def dataset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("cached-ds")
    rng = np.random.default_rng(0)  # every shard distinct (the cache is content-addressed)
    ids, val = rng.integers(3, 4000, size=SHARDS * SHARD_TOKENS), rng.integers(3, 4000, size=4 * SHARD_TOKENS)
    write_token_dataset(open_store(str(root)), {"train": [ids], "val": [val]}, 4096,
                        {"<|endoftext|>": 0, "<pad>": 1, "<mask>": 2}, corpus={"name": "test"},
                        compression=request.param, shard_tokens=SHARD_TOKENS)
    return open_store(str(root)), ids


def _spec(store):
    return RunSpec(preset="tiny-gpt", steps=8, batch_size=4, seq_len=64, dataset=store.url)


def _objects(cache_dir):
    return {p.name for p in cache_dir.rglob("*") if p.is_file() and len(p.name) == 64}


def test_reading_every_shard_stays_within_the_budget_and_keeps_the_newest(dataset, tmp_path, monkeypatch):
    store, ids = dataset
    monkeypatch.setenv(BUDGET_ENV, str(BUDGET / (1 << 20)))
    ds = open_dataset(store, _spec(store), str(tmp_path / "cache"))
    train = ds.splits["train"]
    assert train.cache.budget == BUDGET
    for start in range(0, len(ids) - 100, 250):  # every shard, in order, windows crossing shard boundaries
        assert np.array_equal(train.read(start, 100)[0], ids[start:start + 100])
        assert train.cache.cached_bytes() <= BUDGET and train.mapped <= BUDGET // SHARD_BYTES
    assert train.fetched == SHARDS
    kept = _objects(tmp_path / "cache")
    assert kept == {s["sha256"] for s in train.shards[-len(kept):]}  # least recently used evicted first
    assert 1 <= len(kept) <= BUDGET // SHARD_BYTES


def test_a_shard_being_read_is_never_evicted(dataset, tmp_path):
    store, ids = dataset
    ds = open_dataset(store, _spec(store), str(tmp_path / "cache"))
    train = ds.splits["train"]
    train.cache.budget = BUDGET
    assert np.array_equal(train.read(0, 10)[0], ids[:10])  # shard 0 fetched and mapped
    other = ShardCache(tmp_path / "cache", budget_bytes=BUDGET)  # another reader of the same directory
    hold = other.hold(train.shards[1]["sha256"])
    other.fetch(store, train.shards[1]["name"], train.shards[1]["sha256"])
    for start in range(2 * SHARD_TOKENS, len(ids) - 10, SHARD_TOKENS):
        train.read(start, 10)
        assert train.shards[1]["sha256"] in _objects(tmp_path / "cache")  # held by the other reader
        assert train.cache.cached_bytes() <= BUDGET + SHARD_BYTES  # over by the held shard at most
    hold.release()
    other.make_room(0)
    assert train.shards[1]["sha256"] not in _objects(tmp_path / "cache")  # released: evictable (oldest)


def test_batches_under_a_tiny_budget_equal_the_unbounded_ones(dataset, tmp_path):
    store, _ = dataset
    spec = _spec(store)
    free = open_dataset(store, spec, str(tmp_path / "free"))
    tight = open_dataset(store, spec, str(tmp_path / "tight"))
    tight.splits["train"].cache.budget = BUDGET
    for step in range(spec.steps):
        a, b = batch(spec, step, 0, 1, free), batch(spec, step, 0, 1, tight)
        assert all(a[k].equal(b[k]) for k in a)
    assert tight.splits["train"].cache.cached_bytes() <= BUDGET < free.splits["train"].cache.cached_bytes()


def test_the_budget_is_the_deployments(tmp_path, monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    import shutil

    disk = shutil.disk_usage(tmp_path)
    assert cache_budget(tmp_path) == max(0, disk.free - max(128 << 20, disk.total // 10))
    monkeypatch.setenv(BUDGET_ENV, "512")
    assert cache_budget(tmp_path) == 512 << 20
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(StoreError, match=f"{BUDGET_ENV}='lots': expected a positive number of MiB"):
        cache_budget(tmp_path)
