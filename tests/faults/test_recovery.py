"""Recovery: a killed, failed or lied-to worker never corrupts the run. A killed save leaves no visible
checkpoint; a malformed or inconsistent manifest is skipped like a corrupt object (the previous good gen is
used, with a warning); a failed commit's objects are removed by the next successful prune; a changed spec, a
read-only or full store are refused with one line before any training; `baton` reports only verified state."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import PAUSE_ENV, Baton, Hooks
from relaytrain_runtime.contract.keys import commit_key
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import StoreError, open_store
from tests.fixtures.runs import cli, one_line_error

LEG_STEPS = 4


def _state(step: int) -> dict:
    weights = {"w": torch.full((4, 4), float(step))}
    optimizer = {"state": {0: {"exp_avg": torch.full((4, 4), step / 10)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    return {"weights": weights, "optimizer": optimizer,
            "meta": {"step": step, "tokens": step * 8, "loss": 1.0 / step, "done": False, "cost_usd": 0.0, "rng": {}}}


_cli, _one_line_error = cli, one_line_error  # the shared helpers (tests/fixtures/runs.py)


# --------------------------------------------------------------------------- killed workers

def _leg_proc(url: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "relaytrain_runtime", "leg", "--store", url, "--progress",
                             "--max-steps", str(LEG_STEPS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait_progress(proc: subprocess.Popen, count: int) -> bool:
    seen = 0
    while seen < count:
        line = proc.stderr.readline()
        if not line:
            return False
        seen += line.startswith("@progress ")
    return True


def test_sigkill_at_random_moments_never_corrupts_and_ends_identical(tiny_run):
    steps = 60
    reference = tiny_run(steps=steps)
    run_leg(reference)
    expected = Baton(open_store(reference)).latest()["weights_sha256"]

    url = tiny_run(steps=steps)
    store = open_store(url)
    env = {**os.environ, PAUSE_ENV: "0.03"}  # widen the save window so that mid-save kills are frequent
    rng = random.Random(20261128)
    kills = mid_save = 0
    while kills < 21:
        proc = _leg_proc(url, env)
        mode = kills % 3
        if mode == 0:  # anywhere: start-up, load, training or save
            time.sleep(rng.uniform(0.2, 1.8))
        elif mode == 1:  # mid-step
            _wait_progress(proc, rng.randint(1, LEG_STEPS - 1))
            time.sleep(rng.uniform(0.0, 0.02))
        else:  # the save follows the leg's last step
            _wait_progress(proc, LEG_STEPS)
            time.sleep(rng.uniform(0.0, 0.12))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        baton = Baton(store)
        commit = baton.latest(verify=True)  # every visible checkpoint verifies: nothing partial is ever loaded
        assert baton.warnings == []
        committed = {o["key"] for g in baton.gens() for o in baton.manifest(g)["objects"].values()}
        orphans = {k for k in store.list("ckpt/") if k not in committed}
        mid_save += bool(orphans)
        for key in orphans:  # a killed save's objects, never referenced by a manifest
            assert not any(key.startswith(f"ckpt/{g:08d}-{baton.manifest(g)['leg_id']}/") for g in baton.gens())
        assert commit is None or commit["step"] <= steps
    assert mid_save >= 1, "no kill landed mid-save"

    while not run_leg(url)["done"]:
        pass
    final = Baton(store).latest()
    assert final["step"] == steps and final["weights_sha256"] == expected


# ---------------------------------------------------------------------- malformed manifests

def _two_gens(tmp_path):
    store = open_store(f"file://{tmp_path}/run")
    baton = Baton(store)
    baton.commit(0, _state(1), leg_id="one")
    baton.commit(1, _state(2), leg_id="two")
    return store, json.loads(store.read(commit_key(2)))


MALFORMED = {
    "array": lambda m: [m],
    "no objects": lambda m: {k: v for k, v in m.items() if k != "objects"},
    "no step": lambda m: {k: v for k, v in m.items() if k != "step"},
    "step a string": lambda m: {**m, "step": "2"},
    "done a string": lambda m: {**m, "done": "no"},
    "gen of another key": lambda m: {**m, "gen": 7},
    "size negative": lambda m: {**m, "objects": {**m["objects"], "state": {**m["objects"]["state"], "size": -1}}},
    "sha256 not hex": lambda m: {**m, "objects": {**m["objects"], "state": {**m["objects"]["state"], "sha256": "x"}}},
    "key outside the run": lambda m: {**m, "objects": {**m["objects"],
                                                       "state": {**m["objects"]["state"], "key": "../../etc/passwd"}}},
    "key of the spec": lambda m: {**m, "objects": {**m["objects"],
                                                   "state": {**m["objects"]["state"], "key": "spec.json"}}},
    "key of another gen": lambda m: {**m, "objects": {**m["objects"], "weights": {
        **m["objects"]["weights"], "key": "ckpt/00000001-one/weights.safetensors"}}},
    "weights digest differs": lambda m: {**m, "weights_sha256": "0" * 64},
    "object missing": lambda m: {**m, "objects": {k: v for k, v in m["objects"].items() if k != "optimizer"}},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest_falls_back_to_the_previous_generation(tmp_path, case, capsys):
    store, manifest = _two_gens(tmp_path)
    store.write(commit_key(2), json.dumps(MALFORMED[case](manifest)).encode())
    fresh = Baton(store)
    commit, state = fresh.resume()
    assert commit["gen"] == 1 and state["meta"]["step"] == 1
    assert len(fresh.warnings) == 1 and "baton/00000002.json is malformed" in fresh.warnings[0]
    assert "falling back" in capsys.readouterr().err
    assert fresh.commit(1, _state(2))["gen"] == 3  # never collides with the malformed gen


def test_manifest_that_disagrees_with_its_objects_is_not_reported(tiny_run):
    url = tiny_run(steps=4)
    run_leg(url, max_steps=2)
    run_leg(url, max_steps=2)
    store = open_store(url)
    manifest = json.loads(store.read(commit_key(2)))
    store.write(commit_key(2), json.dumps({**manifest, "step": 3}).encode())  # well formed, a lie
    proc = _cli("baton", "--store", url, "--json")
    info = json.loads(proc.stdout)
    assert info["gen"] == 1 and info["step"] == 2 and info["done"] is False and info["verified"] is True
    assert "does not match its objects" in info["warnings"][0] and "step=3" in info["warnings"][0]


# -------------------------------------------------------------------------- failed commits

class FailAfter(Hooks):
    """A full disk after the object `name`: the commit fails with what the store would raise."""

    def __init__(self, name: str):
        self.name = name

    def object_written(self, baton, gen, name):
        if name == self.name:
            raise StoreError(f"write {baton.store.url}/...: No space left on device (ENOSPC)")


@pytest.mark.parametrize("after", ["weights", "optimizer"])
def test_failed_commit_objects_are_removed_by_the_next_successful_prune(tmp_path, after):
    store = open_store(f"file://{tmp_path}/run")
    Baton(store).commit(0, _state(1))
    for attempt in range(3):  # retries that keep failing leak nothing beyond the latest attempts' gen
        failing = Baton(store, hooks=FailAfter(after))
        failing.resume()
        with pytest.raises(StoreError, match="No space left"):
            failing.commit(1, _state(2), leg_id=f"fail{attempt}")
    assert {k.split("/")[1] for k in store.list("ckpt/")} >= {"00000002-fail0", "00000002-fail2"}
    ok = Baton(store)
    ok.resume()
    assert ok.commit(1, _state(2), leg_id="good")["gen"] == 2
    ok.prune(3)
    assert {k.split("/")[1] for k in store.list("ckpt/")} == {"00000001-" + ok.manifest(1)["leg_id"], "00000002-good"}


# ------------------------------------------------------------------- refused before training

def test_spec_changed_in_the_store_mid_run_is_refused(tiny_run):
    url = tiny_run(steps=6)
    run_leg(url, max_steps=2)
    store = open_store(url)
    spec = json.loads(store.read("spec.json"))
    store.write("spec.json", json.dumps({**spec, "lr": spec["lr"] * 10}).encode())
    with pytest.raises(RelayError, match="run spec was changed after the run started"):
        run_leg(url, max_steps=2)
    _one_line_error(_cli("leg", "--store", url), "spec.json has digest", "restore the original spec.json")
    _one_line_error(_cli("baton", "--store", url, "--json"), "run spec was changed")
    assert Baton(store).gens() == [1]


def test_check_writable_refuses_unwritable_and_full_stores(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"^write file://.*a-file/run/probe/.*(Not a directory|ENOTDIR)"):
        Baton(open_store(f"file://{blocker}/run")).check_writable()
    store = open_store(f"file://{tmp_path}/run")
    baton = Baton(store)
    baton.check_writable(need_bytes=1 << 20)
    assert store.list() == []  # the probe is gone
    monkeypatch.setattr(type(store), "free_bytes", lambda self: 3 << 20)
    with pytest.raises(StoreError, match=r"has 3.0 MiB free, a checkpoint needs 16.0 MiB"):
        baton.check_writable(need_bytes=16 << 20)


def test_file_store_write_errors_are_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    store = open_store(f"file://{blocker}/run")
    for write in (lambda: store.write("k", b"1"), lambda: store.create("k", b"1"),
                  lambda: store.write_parts("k", [b"1"])):
        with pytest.raises(StoreError, match=r"file://.*/k: .*; free space on the volume or make the store writable"):
            write()
