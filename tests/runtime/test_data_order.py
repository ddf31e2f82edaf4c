"""Data order: epochs without replacement as a pure function of (seed, epoch, position); windows across shards;
shards fetched only when a batch needs them; position() and epochs() for the baton and the planner."""

import numpy as np
import pytest
import torch

from relaytrain_runtime.data import batch, epochs, open_dataset, permute, position, write_token_dataset
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store

T, WINDOWS, SHARD = 32, 96, 100  # 3072 tokens in shards of 100: most windows straddle two shards


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """A dataset whose token at stream offset i is i (vocab 4096 > 3072): a window shows where it came from."""
    root = tmp_path_factory.mktemp("counted")
    store = open_store(str(root))
    train = np.arange(T * WINDOWS, dtype=np.int64)
    write_token_dataset(store, {"train": [train], "val": [np.arange(64, dtype=np.int64)]}, 4096,
                        {"<|endoftext|>": 0, "<pad>": 1, "<mask>": 2}, corpus={"name": "counted"}, shard_tokens=SHARD)
    return store


def spec_for(store, **kw):
    return RunSpec(**{"preset": "tiny-gpt", "steps": 60, "seed": 3, "batch_size": 4, "seq_len": T,
                      "dataset": store.url, **kw})


@pytest.mark.parametrize("n", [1, 2, 3, 7, 96, 1000, 4097])
def test_permute_is_a_keyed_bijection(n):
    idx = np.arange(n)
    p = permute(idx, n, seed=5, epoch=0)
    assert sorted(p.tolist()) == list(range(n))
    assert np.array_equal(permute(idx, n, seed=5, epoch=0), p)  # pure
    if n >= 7:
        assert not np.array_equal(permute(idx, n, seed=5, epoch=1), p)
        assert not np.array_equal(permute(idx, n, seed=6, epoch=0), p)


def test_each_epoch_sees_every_window_once(counted, tmp_path):
    spec = spec_for(counted)
    ds = open_dataset(counted, spec, str(tmp_path / "cache"))
    per_epoch = WINDOWS // spec.batch_size  # 24 steps
    seen = [[], []]
    for step in range(2 * per_epoch):
        ids = batch(spec, step, 0, 1, ds)["input_ids"]
        # every row is a contiguous window of the stream, read across shard boundaries
        assert torch.equal(ids - ids[:, :1], torch.arange(T).expand_as(ids))
        seen[step // per_epoch] += ids[:, 0].tolist()
    assert sorted(seen[0]) == sorted(seen[1]) == list(range(0, T * WINDOWS, T))
    assert seen[0] != seen[1]  # a new order each epoch
    assert position(spec, 30, ds) == {"epoch": 1, "position": 30 * 4 - WINDOWS, "tokens_seen": 30 * 4 * T}
    assert position(spec, 0, ds) == {"epoch": 0, "position": 0, "tokens_seen": 0}
    assert epochs(spec, ds.tokens("train")) == pytest.approx(60 * 4 / WINDOWS)


def test_resume_needs_no_replay_and_ranks_split_the_global_batch(counted, tmp_path):
    spec = spec_for(counted)
    fresh = open_dataset(counted, spec, str(tmp_path / "a"))
    later = open_dataset(counted, spec, str(tmp_path / "b"))
    for step in (0, 23, 24, 59):  # 23 -> 24 crosses into epoch 1; any step is computed directly
        whole = batch(spec, step, 0, 1, fresh)["input_ids"]
        assert torch.equal(batch(spec, step, 0, 1, later)["input_ids"], whole)
        assert torch.equal(torch.cat([batch(spec, step, r, 2, later)["input_ids"] for r in range(2)]), whole)


def test_replacement_sampling_is_available(counted, tmp_path):
    spec = spec_for(counted, sampling="replacement")
    ds = open_dataset(counted, spec, str(tmp_path / "cache"))
    starts = torch.cat([batch(spec, s, 0, 1, ds)["input_ids"][:, 0] for s in range(24)])
    assert (starts % T != 0).any()  # any offset, not the epoch's aligned windows
    assert torch.equal(batch(spec, 5, 0, 1, ds)["input_ids"], batch(spec, 5, 0, 1, ds)["input_ids"])
    with pytest.raises(Exception, match="sampling: must be epochs or replacement"):
        spec_for(counted, sampling="shuffle")


def test_a_batch_fetches_only_the_shards_it_reads(counted, tmp_path):
    spec = spec_for(counted)
    cache = tmp_path / "cache"
    ds = open_dataset(counted, spec, str(cache))
    assert ds.splits["train"].fetched == 0  # opening reads the manifest only
    batch(spec, 0, 0, 1, ds)
    shards = len(counted.list("data/train-"))
    assert shards == 31 and 1 <= ds.splits["train"].fetched <= 2 * spec.batch_size < shards
    cached = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert len(cached) == ds.splits["train"].fetched
