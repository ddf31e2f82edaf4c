"""Robustness: a killed shard, duplicated shards, stale shards and reducers, bad events.

Every scenario ends with the same model, bit for bit, as the clean run of the same rounds.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.shards.entry import reduce_op, shard_op, status_op
from relaytrain_runtime.shards.exchange import Exchange, Round
from relaytrain_runtime.store import open_store
from tests.fixtures.shards import bitwise_equal, drive, weights

SPEC = {"preset": "tiny-gpt", "steps": 3, "batch_size": 4, "seq_len": 32, "eval_batches": 1}
FUNCS = {"shards": 2, "sync": "gradients"}


def ev(url, op, **kw):
    return {"op": op, "store": url, **kw}


@pytest.fixture
def clean(shards_run):
    url = shards_run("clean")
    drive(url, SPEC, FUNCS)
    return weights(url)


def test_duplicate_and_late_shards_change_nothing(shards_run, clean):
    url = shards_run()
    status_op(ev(url, "status", spec=SPEC, functions=FUNCS))
    # round 0: every shard runs twice (a retry whose first attempt had already finished)
    r0 = [shard_op(ev(url, "shard", round=0, shard=k)) for k in (0, 1, 1, 0)]
    assert {r["status"] for r in r0} == {"ok"}
    assert reduce_op(ev(url, "reduce", round=0))["status"] == "committed"
    # a duplicate invoked after the commit: it sees the round is done and writes nothing
    late = shard_op(ev(url, "shard", round=0, shard=1))
    assert late["status"] == "stale" and late["current_round"] == 1
    assert open_store(url).list("rounds/") == []
    # a straggler that loaded round 0's baton before the commit writes after it: orphans under round 0
    Exchange(open_store(url), Round(run="x", round=0, baton=r0[0]["baton"], shards=2)).put_shard(
        1, torch.ones(10), {"loss": 99.0})
    assert open_store(url).list("rounds/00000000-")
    drive(url, SPEC, FUNCS)
    assert bitwise_equal(weights(url), clean)
    assert open_store(url).list("rounds/") == []  # the next commit swept the orphans


def test_stale_rounds_and_reducers(shards_run, clean):
    url = shards_run()
    status_op(ev(url, "status", spec=SPEC, functions=FUNCS))
    # a shard for a future round: the baton is behind, nothing is computed or written
    ahead = shard_op(ev(url, "shard", round=2, shard=0))
    assert ahead["status"] == "stale" and ahead["current_round"] == 0
    assert open_store(url).list("rounds/") == []
    drive(url, SPEC, FUNCS, rounds=1)
    # a duplicate reducer of the committed round: stale, no second commit
    gens = open_store(url).list("baton/")
    assert reduce_op(ev(url, "reduce", round=0))["status"] == "stale"
    assert open_store(url).list("baton/") == gens
    # a reducer that runs before all shards have written reports the missing ones
    assert shard_op(ev(url, "shard", round=1, shard=1))["status"] == "ok"
    missing = reduce_op(ev(url, "reduce", round=1))
    assert missing["status"] == "missing" and missing["missing"] == [0]
    drive(url, SPEC, FUNCS)
    assert bitwise_equal(weights(url), clean)
    # the finished run: shards and reducers say so
    assert shard_op(ev(url, "shard", round=3, shard=0))["status"] == "done"


def test_killed_shard_is_retried(shards_run, clean):
    """SIGKILL a shard process mid-flight; the reducer reports it missing; its retry completes the round."""
    url = shards_run()
    status_op(ev(url, "status", spec=SPEC, functions=FUNCS))
    cmd = [sys.executable, "-m", "relaytrain_runtime", "shard", "--store", url, "--round", "0", "--shards", "2"]
    victim = subprocess.Popen(cmd + ["--shard", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)  # inside its start-up, load or compute
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert shard_op(ev(url, "shard", round=0, shard=0))["status"] == "ok"
    out = reduce_op(ev(url, "reduce", round=0))
    assert out["status"] == "missing" and out["missing"] == [1]
    retry = subprocess.run(cmd + ["--shard", "1"], capture_output=True, text=True)
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout.splitlines()[-1])["status"] == "ok"
    assert reduce_op(ev(url, "reduce", round=0))["status"] == "committed"
    drive(url, SPEC, FUNCS)
    assert bitwise_equal(weights(url), clean)


def test_parallel_piece_reducers_commit_once(shards_run, clean):
    url = shards_run()
    status_op(ev(url, "status", spec=SPEC, functions=FUNCS))
    for rnd in range(SPEC["steps"]):
        baton = [shard_op(ev(url, "shard", round=rnd, shard=k))["baton"] for k in range(2)][0]
        first = reduce_op(ev(url, "reduce", round=rnd, piece=1, baton=baton))
        assert first["status"] == "reduced"  # piece 0 is not reduced yet: no commit
        last = reduce_op(ev(url, "reduce", round=rnd, piece=0, baton=baton))
        assert last["status"] == "committed" and last["round"] == rnd
    assert bitwise_equal(weights(url), clean)


@pytest.mark.parametrize("event,message", [
    ({"op": "shard", "round": 0, "shard": 0}, "event field 'store' is required"),
    ({"op": "shard", "store": "STORE", "shard": 0}, "event field 'round' is required"),
    ({"op": "shard", "store": "STORE", "round": -1, "shard": 0}, "event field 'round' must be >= 0"),
    ({"op": "shard", "store": "STORE", "round": 0, "shard": 5}, "shard 5 is out of range: this run has 2 shards"),
    ({"op": "shard", "store": "STORE", "round": 0, "shard": 0, "shards": 3}, "shards=3 but the run"),
    ({"op": "reduce", "store": "STORE", "round": 0, "piece": 2}, "piece 2 is out of range"),
    ({"op": "reduce", "store": "STORE", "round": 0, "baton": "abc"}, "field 'baton' must be the 64-hex digest"),
    ({"op": "shard", "store": "STORE", "round": 0, "shard": 0, "functions": {"shards": 4}},
     "holds a different function-shards config"),
    ({"op": "shard", "store": "STORE", "round": 0, "shard": 0, "functions": {"shards": 2, "sync": "allreduce"}},
     "sync: must be gradients or diloco"),
])
def test_bad_events_one_clear_line(shards_run, event, message):
    url = shards_run()
    status_op(ev(url, "status", spec=SPEC, functions=FUNCS))
    event = {k: (url if v == "STORE" else v) for k, v in event.items()}
    op = shard_op if event["op"] == "shard" else reduce_op
    with pytest.raises(RelayError, match=message.replace("(", r"\(")):
        op(event)


def test_batch_must_split_evenly(shards_run):
    url = shards_run()
    with pytest.raises(RelayError, match="batch_size 4 must be divisible by functions.shards 3"):
        status_op(ev(url, "status", spec=SPEC, functions={"shards": 3}))
    assert not open_store(url).exists("spec.json") and not open_store(url).exists("shards.json")


def test_cli_errors_are_one_line(shards_run):
    url = shards_run()
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "shard", "--store", url, "--round", "0",
                          "--shard", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no run at" in lines[0] and "Traceback" not in out.stderr
    assert not open_store(url).exists("shards.json")


def test_handler_registry_serves_shard_and_reduce(shards_run, clean, tmp_path):
    """The cloud handlers' op registry runs these entry points, with their price and a dataset cache."""
    import time as _time

    from relaytrain_runtime.handlers.ops import run_op

    url = shards_run()
    deadline = _time.time() + 600
    for rnd in range(SPEC["steps"]):
        shards = [run_op({"op": "shard", "store": url, "round": rnd, "shard": k, "shards": 2, "spec": SPEC,
                          "functions": FUNCS, "cache_dir": str(tmp_path / "cache")}, deadline, cost_per_second=0.01)
                  for k in range(2)]
        assert [s["status"] for s in shards] == ["ok", "ok"], shards
        out = run_op({"op": "reduce", "store": url, "round": rnd, "baton": shards[0]["baton"]}, deadline,
                     cost_per_second=0.01)
        assert out["status"] == "committed", out
    assert out["done"] and out["cost_usd"] > 0  # every invocation's seconds were billed into the run
    assert any((tmp_path / "cache").iterdir())  # dataset shards were cached
    assert bitwise_equal(weights(url), clean)
    bad = run_op({"op": "shard", "store": url, "round": 0}, deadline)
    assert bad["error"]["message"].startswith("event field 'shard' is required")
