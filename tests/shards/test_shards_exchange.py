"""The exchange layer on file:// stores: object format, dtypes, reduce-scatter, checks, sweep."""

import pytest
import torch

from relaytrain_runtime.shards.exchange import (
    Exchange,
    ExchangeError,
    Round,
    decode,
    encode,
    pack,
    piece_bounds,
    sweep,
    unpack,
)
from relaytrain_runtime.store import open_store


@pytest.fixture
def store(tmp_path):
    return open_store(f"file://{tmp_path}/run")


def _vectors(K, n=1001, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 10 ** (k - 2) for k in range(K)]


@pytest.mark.parametrize("n,K", [(10, 3), (7, 7), (3, 4), (1001, 8)])
def test_piece_bounds_partition(n, K):
    b = piece_bounds(n, K)
    assert len(b) == K and b[0][0] == 0 and b[-1][1] == n
    assert all(b[i][1] == b[i + 1][0] for i in range(K - 1))
    assert max(s - a for a, s in b) - min(s - a for a, s in b) <= 1


@pytest.mark.parametrize("dtype,rel", [("fp32", 0.0), ("bf16", 2**-8), ("fp16", 2**-11)])
def test_encode_round_trip_precision(dtype, rel):
    v = torch.randn(4096, dtype=torch.float32)
    payload, scale = encode(v, dtype)
    assert len(payload) == 4096 * (4 if dtype == "fp32" else 2)
    back = decode(payload, dtype, 4096, scale)
    assert back.dtype == torch.float32
    err = ((back - v).abs() / v.abs().clamp_min(1e-30)).max().item()
    assert err <= rel


def test_fp16_scaling_keeps_small_gradients():
    """Gradients around 1e-9 flush to zero in plain fp16; the per-object scale keeps them."""
    v = torch.randn(1000) * 1e-9
    assert (v.to(torch.float16) == 0).all()
    payload, scale = encode(v, "fp16")
    back = decode(payload, "fp16", 1000, scale)
    assert ((back - v).abs() <= v.abs().max() * 2**-11).all()
    assert (back != 0).sum() > 990


def test_pack_detects_corruption_and_truncation():
    blob = pack({"x": 1}, torch.arange(10, dtype=torch.float32), "fp32")
    head, vec = unpack(blob)
    assert head["x"] == 1 and torch.equal(vec, torch.arange(10, dtype=torch.float32))
    flipped = bytearray(blob)
    flipped[-3] ^= 0xFF
    with pytest.raises(ExchangeError, match="checksum mismatch"):
        unpack(bytes(flipped))
    with pytest.raises(ExchangeError, match="truncated"):
        unpack(blob[:-4])
    with pytest.raises(ExchangeError, match="bad magic"):
        unpack(b"PK\x03\x04" + blob)


@pytest.mark.parametrize("K", [1, 2, 4])
def test_reduce_scatter_equals_weighted_mean(store, K):
    rnd = Round(run="r" * 64, round=3, baton="b" * 64, shards=K)
    ex = Exchange(store, rnd)
    vecs = _vectors(K)
    weights = [1.0 + k for k in range(K)]
    for k in range(K):
        ex.put_shard(k, vecs[k], {"weight": weights[k], "loss": float(k)})
    assert ex.present(0) == list(range(K))
    for j in reversed(range(K)):  # reducers run in any order
        assert ex.reduce_piece(j)["status"] == "ok"
    got, info = ex.assemble()
    metas = info["metas"]
    want = sum(w * v.double() for w, v in zip(weights, vecs, strict=True)) / sum(weights)
    assert torch.allclose(got.double(), want, rtol=1e-6, atol=1e-6 * want.abs().max().item())  # fp32 sums
    assert metas == {k: {"weight": weights[k], "loss": float(k)} for k in range(K)}


def test_reducer_reports_missing_and_writes_nothing(store):
    rnd = Round(run="r", round=0, baton="b", shards=3)
    ex = Exchange(store, rnd)
    v = _vectors(3)
    ex.put_shard(0, v[0], {})
    ex.put_shard(2, v[2], {})
    out = ex.reduce_piece(1)
    assert out["status"] == "missing" and out["missing"] == [1]
    assert ex.reduced_present() == []
    with pytest.raises(ExchangeError, match="piece 0 of round 0 is not reduced yet"):
        ex.assemble()


def test_stale_and_foreign_objects_are_refused(store):
    """An object of another baton or round placed under this round's key is never reduced."""
    rnd = Round(run="r", round=5, baton="b" * 64, shards=2)
    old = Round(run="r", round=4, baton="b" * 64, shards=2)
    other = Round(run="r", round=5, baton="c" * 64, shards=2)
    ex = Exchange(store, rnd)
    ex.put_shard(0, torch.ones(8), {})
    # a shard that loaded another baton writes under another prefix: this round does not see it
    Exchange(store, other).put_shard(1, torch.full((8,), 100.0), {})
    assert ex.present(0) == [0]
    # an old-round object copied (or mis-written) onto this round's key is refused by its header
    Exchange(store, old).put_shard(1, torch.full((8,), 100.0), {})
    store.write(rnd.shard_key(0, 1), store.read(old.shard_key(0, 1)))
    out = ex.reduce_piece(0)
    assert out["status"] == "missing" and out["missing"] == [1]
    assert "round is 4, expected 5" in out["problems"][0]
    # the retried shard overwrites it and the round completes with the right values
    ex.put_shard(1, torch.full((8,), 3.0), {})
    assert ex.reduce_piece(0)["status"] == "ok" and ex.reduce_piece(1)["status"] == "ok"
    assert torch.equal(ex.assemble()[0], torch.full((8,), 2.0))


def test_duplicate_shard_changes_nothing(store):
    rnd = Round(run="r", round=0, baton="b", shards=2)
    ex = Exchange(store, rnd, "bf16")
    v = _vectors(2)
    for k in (0, 1, 1, 0):  # duplicates, same baton, same content
        ex.put_shard(k, v[k], {})
    for j in range(2):
        ex.reduce_piece(j)
    first = ex.assemble()[0]
    ex.put_shard(1, v[1], {})  # late duplicate after the reduction
    for j in range(2):
        ex.reduce_piece(j)
    assert torch.equal(ex.assemble()[0], first)


def test_sweep_deletes_committed_rounds_only(store):
    for r in range(4):
        Exchange(store, Round(run="r", round=r, baton=f"{r}" * 8, shards=2)).put_shard(0, torch.ones(4), {})
    store.write("baton/00000001.json", b"{}")
    assert sweep(store, 2) == 6
    left = store.list("rounds/")
    assert left and all(k.startswith("rounds/00000003-") for k in left)
    assert store.exists("baton/00000001.json")


def test_bad_inputs_give_clear_errors(store):
    with pytest.raises(ExchangeError, match="exchange dtype 'int8' is not supported"):
        Exchange(store, Round(run="r", round=0, baton="b", shards=2), "int8")
    ex = Exchange(store, Round(run="r", round=0, baton="b", shards=2))
    with pytest.raises(ExchangeError, match="shard index 2 is out of range for 2 shards"):
        ex.put_shard(2, torch.ones(3), {})
    with pytest.raises(ExchangeError, match="round must be >= 0"):
        Round(run="r", round=-1, baton="b", shards=2)
