"""Baton: spec written once, commits fenced by create(), sha256-verified loads with fallback, pruning."""

import json

import pytest
import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton, weights_digest
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import TINY_SPEC


def _state(step: int, value: float = 1.0) -> dict:
    w = {"a.weight": torch.full((3, 4), value), "b.bias": torch.arange(5, dtype=torch.float32) * value}
    opt = {"state": {0: {"step": torch.tensor(float(step)), "exp_avg": torch.ones(3, 4) * step}},
           "param_groups": [{"lr": 0.1, "betas": [0.9, 0.95], "params": [0, 1]}]}
    return {"weights": w, "optimizer": opt, "meta": {"step": step, "tokens": step * 10, "loss": 1.0 / step,
                                                       "done": False, "cost_usd": 0.0, "rng": {}, "metrics": {}}}


def test_spec_is_written_once_and_a_different_one_refused(tmp_path):
    baton = Baton(open_store(str(tmp_path)))
    spec = RunSpec(**TINY_SPEC)
    assert baton.init(spec) is True
    assert baton.init(RunSpec(**TINY_SPEC)) is False  # identical: fine
    with pytest.raises(RelayError, match=r"already holds a different run \(steps=12 \(asked 11\)\)"):
        baton.init(RunSpec(**{**TINY_SPEC, "steps": 11}))  # raising steps is a new version (test_models_respec)
    assert baton.spec() == spec


def test_commit_load_round_trip_and_race_fence(tmp_path):
    baton = Baton(open_store(str(tmp_path)))
    assert baton.latest() is None and baton.resume() == (None, None)
    c1 = baton.commit(0, _state(1))
    assert c1["gen"] == 1 and c1["weights_sha256"] == weights_digest(_state(1)["weights"])
    commit, state = Baton(baton.store).resume()
    assert commit["gen"] == 1 and state["meta"]["step"] == 1
    assert torch.equal(state["weights"]["b.bias"], _state(1)["weights"]["b.bias"])
    assert torch.equal(state["optimizer"]["state"][0]["exp_avg"], torch.ones(3, 4))
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.1
    # two legs resumed from gen 1 race to commit gen 2: exactly one wins, the loser's objects are gone
    a, b = Baton(baton.store), Baton(baton.store)
    a.resume(), b.resume()
    won, lost = a.commit(1, _state(2, 2.0), leg_id="aaaa"), b.commit(1, _state(2, 3.0), leg_id="bbbb")
    assert won["gen"] == 2 and lost is None
    assert not baton.store.list("ckpt/00000002-bbbb/") and baton.store.list("ckpt/00000002-aaaa/")
    assert Baton(baton.store).latest()["leg_id"] == "aaaa"


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_damaged_latest_checkpoint_falls_back_to_previous(tmp_path, damage, capsys):
    store = open_store(str(tmp_path))
    baton = Baton(store)
    baton.commit(0, _state(1))
    baton.commit(1, _state(2, 2.0))
    key = baton.manifest(2)["objects"]["weights"]["key"]
    raw = store.read(key)
    if damage == "flip":
        store.write(key, raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    elif damage == "truncate":
        store.write(key, raw[: len(raw) // 2])
    elif damage == "delete":
        store.delete(key)
    else:
        key = "baton/00000002.json"
        store.write(key, store.read(key)[:40])
    fresh = Baton(store)
    commit, state = fresh.resume()
    assert commit["gen"] == 1 and state["meta"]["step"] == 1
    assert len(fresh.warnings) == 1 and key in fresh.warnings[0] and "gen 2" in fresh.warnings[0]
    assert key in capsys.readouterr().err
    # the next commit never collides with the damaged gen
    assert fresh.commit(1, _state(2))["gen"] == 3
    assert Baton(store).latest()["gen"] == 3


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    store = open_store(str(tmp_path))
    Baton(store).commit(0, _state(1))
    store.write("baton/00000001.json", b"garbage")
    with pytest.raises(RelayError, match="no usable checkpoint.*delete the bad baton/"):
        Baton(store).resume()


def test_prune_keeps_the_last_k(tmp_path):
    store = open_store(str(tmp_path))
    baton = Baton(store)
    for step in range(1, 6):
        baton.commit(step - 1, _state(step))
    store.write("ckpt/00000001-orphan/weights.safetensors", b"left by a killed save")
    assert baton.prune(2) == [1, 2, 3]
    assert baton.gens() == [4, 5]
    assert {k.split("/")[1].split("-")[0] for k in store.list("ckpt/")} == {"00000004", "00000005"}
    assert Baton(store).resume()[0]["gen"] == 5


def test_leg_resumes_from_the_previous_checkpoint_when_the_latest_is_corrupt(tiny_run):
    url = tiny_run()
    run_leg(url, max_steps=3)
    first = run_leg(url, max_steps=3)
    store = open_store(url)
    key = json.loads(store.read("baton/00000002.json"))["objects"]["optimizer"]["key"]
    store.write(key, store.read(key)[:-7])
    status = run_leg(url, max_steps=3)
    assert status["step"] == 6 and status["gen"] == 3 and any(key in w for w in status["warnings"])
    assert first["step"] == 6


def test_checkpoint_files_are_standard_safetensors(tmp_path):
    from safetensors.torch import load as st_load

    from relaytrain_runtime.tensorfile import decode, encode

    tensors = {"w": torch.randn(3, 5), "i": torch.arange(4), "h": torch.ones(2, dtype=torch.bfloat16),
               "e": torch.zeros(0, 3)}
    raw = b"".join(encode(tensors, {"format": "pt"}))
    theirs = st_load(raw)
    ours = decode(bytearray(raw))
    for name, t in tensors.items():
        assert torch.equal(theirs[name], t) and torch.equal(ours[name], t) and ours[name].dtype == t.dtype
    ours["w"].add_(1)  # decoded tensors are writable views
    store = open_store(str(tmp_path))
    Baton(store).commit(0, _state(1))
    key = Baton(store).latest()["objects"]["weights"]["key"]
    assert set(st_load(store.read(key))) == {"a.weight", "b.bias"}


def test_prune_tombstones_manifests_and_drops_their_eval_records(tmp_path):
    store = open_store(str(tmp_path))
    baton = Baton(store)
    for step in range(1, 5):
        baton.commit(step - 1, _state(step))
        store.write(f"eval/{step:08d}.json", b"{}")
    assert baton.prune(1) == [1, 2, 3]
    assert store.list("eval/") == ["eval/00000004.json"]
    assert json.loads(store.read("baton/00000001.json")) == {"gen": 1, "pruned": True}
    assert store.exists("baton/00000003.pruned") and baton.gens() == [4]
    assert baton.prune(1) == []  # idempotent: pruned gens stay pruned, the fence stays
    stale = Baton(store)
    stale.next_gen = 2  # as if it had resumed gen 1 before the others committed
    assert stale.commit(1, _state(2)) is None
