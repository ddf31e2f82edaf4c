"""Bad input gets one clear line, a non-zero exit, no traceback, and nothing half-written. (SIGKILL at random
moments: tests/faults/test_recovery.py.)"""

import json

from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import cli, one_line_error

LEG_STEPS = 4


_cli, _one_line_error = cli, one_line_error  # the shared helpers (tests/fixtures/runs.py)


def test_unknown_preset_is_one_line_and_writes_nothing(tmp_path):
    store = tmp_path / "run"
    proc = _cli("init", "--store", f"file://{store}", "--preset", "gpt5", "--steps", "3", kit=True)
    _one_line_error(proc, "unknown 'gpt5'", "tiny-gpt")
    assert not store.exists()


def test_missing_store_is_one_line_and_creates_nothing(tmp_path):
    store = tmp_path / "nowhere"
    _one_line_error(_cli("leg", "--store", f"file://{store}"), "no run at", "relaytrain init")
    _one_line_error(_cli("baton", "--store", f"file://{store}", "--json"), "no run at")
    assert not store.exists()


def test_unwritable_store_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = _cli("init", "--store", f"file://{blocker}/run", "--preset", "tiny-gpt", "--steps", "3")
    _one_line_error(proc, "cannot be created", "writable")


def test_spec_mismatch_is_refused_and_the_run_untouched(tiny_run):
    url = tiny_run()
    before = open_store(url).read("spec.json")
    proc = _cli("init", "--store", url, "--preset", "tiny-gpt", "--steps", "5", "--seed", "7")  # raising is accepted
    _one_line_error(proc, "already holds a different run", "steps=12 (asked 5)", "new store URL")
    assert open_store(url).read("spec.json") == before


def test_corrupt_manifests_are_one_clear_line(tiny_run):
    url = tiny_run()
    store = open_store(url)
    good = store.read("data/manifest.json")
    store.write("data/manifest.json", good[:50])
    _one_line_error(_cli("leg", "--store", url), "data/manifest.json is corrupt", "init")
    assert not store.list("baton/")
    store.write("data/manifest.json", good)
    run_leg(url, max_steps=1)
    store.write("baton/00000001.json", b"{\"truncated")
    line = _one_line_error(_cli("leg", "--store", url), "no usable checkpoint")
    assert "baton/" in line
    store.write("spec.json", b"[]")
    _one_line_error(_cli("baton", "--store", url, "--json"), "spec.json is unusable")


def test_bad_leg_and_export_options_are_one_line(tiny_run, tmp_path):
    url = tiny_run()
    _one_line_error(_cli("leg", "--store", url, "--max-seconds", "0"), "--max-seconds must be > 0")
    _one_line_error(_cli("export", "--store", url, "--out", str(tmp_path / "hf")), "no checkpoint yet")
    assert not (tmp_path / "hf").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    run_leg(url, max_steps=1)
    _one_line_error(_cli("export", "--store", url, "--out", str(other)), "not an earlier export")
    assert [p.name for p in other.iterdir()] == ["keep.txt"]


def test_baton_json_reports_state(tiny_run):
    url = tiny_run(steps=2)
    run_leg(url)
    info = json.loads(_cli("baton", "--store", url, "--json", kit=True).stdout)
    assert info["step"] == 2 and info["done"] is True and info["loss"] > 0 and len(info["weights_sha256"]) == 64
