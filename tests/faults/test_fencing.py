"""Fencing: a stale worker can never commit or mark a run done, whatever keep_last is and however its commit
interleaves with other workers' commits and prunes; a loader whose checkpoint is pruned under it loads the newest.

Interleavings are forced at the baton's injection points (`Baton(store, hooks=...)`), never by timing."""

import json

import pytest
import torch

from relaytrain_runtime import baton as baton_module
from relaytrain_runtime.baton import Baton, Hooks
from relaytrain_runtime.contract.keys import EVAL_PREFIX, commit_key, eval_key
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store


def _state(step: int) -> dict:
    weights = {"w": torch.full((4, 4), float(step))}
    optimizer = {"state": {0: {"exp_avg": torch.full((4, 4), step / 10)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    return {"weights": weights, "optimizer": optimizer,
            "meta": {"step": step, "tokens": step * 8, "loss": 1.0 / step, "done": False, "cost_usd": 0.0, "rng": {}}}


class Once(Hooks):
    """Runs `action()` the first time the named injection point is reached (object hooks: after `name`)."""

    def __init__(self, point: str, action, name: str | None = None):
        self.point, self.action, self.name, self.fired = point, action, name, False

    def _fire(self, point: str, name: str | None = None) -> None:
        if not self.fired and point == self.point and (self.name is None or name == self.name):
            self.fired = True
            self.action()

    def object_written(self, baton, gen, name):
        self._fire("object_written", name)

    def before_manifest(self, baton, gen):
        self._fire("before_manifest")

    def before_prune(self, baton, gens):
        self._fire("before_prune")

    def before_load(self, baton, commit):
        self._fire("before_load")


def _others_commit_and_prune(store, count: int, keep_last: int):
    """What other, faster legs do meanwhile: each resumes the newest, commits the next gen and prunes."""
    def action():
        for _ in range(count):
            other = Baton(store)
            commit, state = other.resume()
            assert other.commit(commit["gen"], _state(commit["step"] + 1)) is not None
            other.prune(keep_last)
    return action


POINTS = [("before_manifest", None), ("object_written", "weights"), ("object_written", "state")]


@pytest.mark.parametrize("keep_last", [1, 2, 3])
@pytest.mark.parametrize("point,name", POINTS)
def test_stale_commit_after_others_committed_and_pruned_loses(tmp_path, keep_last, point, name):
    store = open_store(f"file://{tmp_path}/run")
    Baton(store).commit(0, _state(1))
    stale = Baton(store, hooks=Once(point, _others_commit_and_prune(store, 2, keep_last), name))
    commit, _ = stale.resume()  # gen 1; then gens 2 and 3 are committed (and gens below the kept ones pruned)
    assert stale.commit(commit["gen"], _state(2), leg_id="stale") is None
    assert stale.hooks.fired
    assert not store.list("ckpt/00000002-stale/")  # the loser removes its objects
    fresh = Baton(store)
    assert fresh.latest()["gen"] == 3 and fresh.warnings == []
    assert fresh.gens() == [1, 2, 3][-keep_last:]


def test_stale_commit_of_a_gen_pruned_long_ago_loses(tmp_path):
    store = open_store(f"file://{tmp_path}/run")
    Baton(store).commit(0, _state(1))
    stale = Baton(store)
    commit, _ = stale.resume()
    _others_commit_and_prune(store, 5, 1)()  # gens 2..6; 1..5 pruned
    assert stale.commit(commit["gen"], _state(2)) is None
    assert json.loads(store.read(commit_key(2))) == {"gen": 2, "pruned": True}  # the tombstone still fences


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_pruned_gen_fences_on_object_stores(scheme, request):
    bucket = request.getfixturevalue("s3_bucket" if scheme == "s3" else "gcs_bucket")
    store = open_store(f"{scheme}://{bucket}/runs/fence")
    Baton(store).commit(0, _state(1))
    stale = Baton(store, hooks=Once("before_manifest", _others_commit_and_prune(store, 2, 1)))
    commit, _ = stale.resume()
    assert stale.commit(commit["gen"], _state(2)) is None  # If-None-Match: * / ifGenerationMatch=0 on a tombstone
    assert Baton(store).gens() == [3]


@pytest.mark.parametrize("keep_last", [1, 2])
def test_loader_whose_checkpoint_is_pruned_meanwhile_loads_the_newest(tmp_path, keep_last, capsys):
    store = open_store(f"file://{tmp_path}/run")
    for step in (1, 2):
        b = Baton(store)
        b.resume()
        b.commit(step - 1, _state(step))
    # the loader chose gen 2; before it reads the objects, three more gens are committed and 2 is pruned
    loader = Baton(store, hooks=Once("before_load", _others_commit_and_prune(store, 3, keep_last)))
    commit, state = loader.resume()
    assert commit["gen"] == 5 and state["meta"]["step"] == 5 and loader.next_gen == 6
    assert loader.warnings == [] and "delete the bad" not in capsys.readouterr().err


def test_prune_while_a_leg_is_saving_keeps_its_objects(tmp_path):
    """A prune never deletes objects of a save in flight (a gen above the newest commit)."""
    store = open_store(f"file://{tmp_path}/run")
    Baton(store).commit(0, _state(1))

    def prune_now():
        Baton(store).prune(1)

    saver = Baton(store, hooks=Once("before_manifest", prune_now))
    commit, _ = saver.resume()
    new = saver.commit(commit["gen"], _state(2))
    assert new is not None and Baton(store).latest()["gen"] == 2  # its objects survived and verify


def test_stale_finishing_leg_gets_lost_race_and_leaves_no_record(tiny_run, monkeypatch):
    """The reported probe: keep_last 1, a leg resumed gen 1 while other legs committed 2 and 3 (pruning 2)."""
    url = tiny_run(steps=4, keep_last=1)
    run_leg(url, max_steps=2)  # gen 1, step 2

    def two_more_legs():
        monkeypatch.setattr(baton_module, "HOOKS", Hooks())
        assert run_leg(url, max_steps=1)["gen"] == 2
        assert run_leg(url, max_steps=1)["status"] == "done"  # gen 3 finishes the run; gens 1, 2 pruned

    monkeypatch.setattr(baton_module, "HOOKS", Once("before_manifest", two_more_legs))
    status = run_leg(url)  # resumes gen 1, trains to step 4, then the others overtake it
    assert status["status"] == "lost_race" and status["done"] is False
    store = open_store(url)
    assert Baton(store).gens() == [3]
    assert store.list(EVAL_PREFIX) == [eval_key(3)]  # evaluation records refer only to live gens
    assert not any(k.startswith("legs/00000002-" + status["leg_id"]) for k in store.list("legs/"))
