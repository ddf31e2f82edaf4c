"""Legs: exact resumption (bitwise-identical weights however the run is cut), the time-based trigger, the status."""

import random
import time

import pytest

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store

STATUS_KEYS = {"status", "done", "step", "gen", "loss", "tokens", "cost_usd", "leg_steps", "seconds"}


def _final(url: str) -> dict:
    return Baton(open_store(url)).latest()


@pytest.mark.parametrize("preset,extra", [("tiny-gpt", {}), ("tiny-bert", {"micro_batch_size": 2})])
def test_legs_cut_anywhere_give_bitwise_identical_weights(tiny_run, preset, extra):
    steps = 12
    whole = tiny_run(preset=preset, steps=steps, **extra)
    status = run_leg(whole)
    assert status["done"] and status["leg_steps"] == steps and STATUS_KEYS <= set(status)
    reference = _final(whole)["weights_sha256"]
    rng = random.Random(preset)
    for trial in range(3):
        url = tiny_run(preset=preset, steps=steps, **extra)
        cuts = []
        while not (s := run_leg(url, max_steps=rng.choice([1, 1, 2, 3, 5])))["done"]:
            cuts.append(s["leg_steps"])
        assert 1 in cuts or trial > 0  # 1-step legs included
        assert _final(url)["weights_sha256"] == reference, f"legs {cuts} diverged"
        assert _final(url)["step"] == steps


def test_a_different_seed_gives_different_weights(tiny_run):
    a, b = tiny_run(steps=3), tiny_run(steps=3, seed=8)
    run_leg(a), run_leg(b)
    assert _final(a)["weights_sha256"] != _final(b)["weights_sha256"]


def test_deadline_stops_the_leg_before_the_time_box_and_commits(tiny_run):
    url = tiny_run(steps=100_000)
    deadline = time.time() + 4.0
    status = run_leg(url, deadline=deadline, margin_s=0.5)
    assert time.time() <= deadline
    assert status["status"] == "ok" and 0 < status["leg_steps"] < 100_000 and not status["done"]
    assert _final(url)["step"] == status["step"]
    secs = status["seconds"]
    assert set(secs) == {"start", "load", "train", "save"} and secs["train"] > 0 and secs["save"] > 0


def test_a_time_box_too_small_for_one_step_commits_nothing(tiny_run):
    url = tiny_run(steps=5)
    status = run_leg(url, deadline=time.time() + 0.05)
    assert status["leg_steps"] == 0 and status["step"] == 0 and status["gen"] == 0
    assert Baton(open_store(url)).gens() == []


def test_status_accrues_cost_and_reports_done(tiny_run):
    url = tiny_run(steps=4)
    first = run_leg(url, max_steps=2, cost_per_second=1.0)
    second = run_leg(url, max_steps=5, cost_per_second=1.0)
    assert 0 < first["cost_usd"] < second["cost_usd"]
    assert second["status"] == "done" and second["done"] and second["step"] == 4 and second["tokens"] == 4 * 4 * 32
    assert second["val_loss"] > 0 and open_store(url).exists(f"eval/{second['gen']:08d}.json")
    again = run_leg(url)
    assert again["status"] == "done" and again["leg_steps"] == 0 and again["gen"] == second["gen"]
    legs = Baton(open_store(url)).leg_statuses()
    assert [s["leg_steps"] for s in legs] == [2, 2]


TRAIN_FIELDS = {"kind", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_s", "data_s", "compute_s"}


def test_metrics_stream_and_periodic_evaluation_keep_the_best(tiny_run):
    """One metrics object per commit, written with it; eval_every evaluates at the first commit at or
    after each multiple (val loss in the manifest, the status, the stream and eval/<gen>.json); the
    checkpoint no longer carries the history; the best evaluated commit survives keep_last: 1."""
    import json

    from relaytrain_runtime.contract.keys import eval_key, metrics_key, pruned_key
    from relaytrain_runtime.contract.metrics import read_stream

    # a constant lr of 0.1 without warmup overshoots: validation loss at step 4 is lower than at 6
    # and 9, so the best commit is an old one and pruning must spare it
    url = tiny_run(steps=9, eval_every=3, keep_last=1, lr=0.1, min_lr=0.1, warmup_steps=0, schedule="constant")
    store, statuses = open_store(url), []
    for leg_steps in (2, 2, 2, 1, 2):  # commits after steps 2, 4, 6, 7, 9: evaluations at 4, 6, 9
        statuses.append(run_leg(url, max_steps=leg_steps))
    assert statuses[-1]["done"] and [s["step"] for s in statuses] == [2, 4, 6, 7, 9]
    assert [("val_loss" in s) for s in statuses] == [False, True, True, False, True]

    train = read_stream(store, "train")
    assert [r["step"] for r in train] == list(range(1, 10)) and all(TRAIN_FIELDS <= set(r) for r in train)
    assert all(r["tokens"] == r["step"] * 4 * 32 and r["grad_norm"] > 0 for r in train)
    evals = read_stream(store, "eval")
    assert [r["step"] for r in evals] == [4, 6, 9]
    assert [r["val_loss"] for r in evals] == [s["val_loss"] for s in statuses if "val_loss" in s]
    for s in statuses:  # every commit wrote its metrics object
        assert store.exists(metrics_key(s["gen"], s["leg_id"]))

    baton = Baton(store)
    latest = baton.latest()
    assert "metrics" not in baton.read_state(latest) and latest["val_loss"] == statuses[-1]["val_loss"]
    best = min(evals, key=lambda r: r["val_loss"])
    assert best["gen"] != latest["gen"], "the settings must make an older commit the best one"
    assert baton.gens() == sorted({best["gen"], latest["gen"]})  # keep_last 1, plus the best
    kept = baton.manifest(best["gen"])
    assert kept["val_loss"] == best["val_loss"] and baton.load(kept)["meta"]["best_gen"] == best["gen"]
    assert json.loads(store.read(eval_key(best["gen"])))["loss"] == best["val_loss"]
    # an unevaluated old commit was pruned (its manifest stays as a tombstone: the fence, tests/faults/test_fencing.py)
    assert statuses[0]["gen"] not in baton.gens() and store.exists(pruned_key(statuses[0]["gen"]))


def test_a_lost_race_leaves_no_metrics_and_an_orphan_does_not_count(tiny_run):
    """Two engines resume the same commit and both step: the second committer loses the create-only
    race and its metrics object goes with its checkpoint objects. A worker killed after writing its
    metrics object but before its manifest leaves an orphan that the history ignores."""
    from relaytrain_runtime.contract.keys import metrics_key
    from relaytrain_runtime.contract.metrics import encode_records, read_stream
    from relaytrain_runtime.engine import Engine

    url = tiny_run(steps=4)
    store = open_store(url)
    engines = [Engine(url, leg_id=name) for name in ("winner", "loser")]
    for engine in engines:
        engine.prepare_data()
        engine.resume()
        engine.step()
    store.write(metrics_key(1, "killed"), encode_records([{"kind": "train", "step": 1, "loss": -1.0}]))
    assert engines[0].commit() and not engines[1].commit()
    assert store.exists(metrics_key(1, "winner")) and not store.exists(metrics_key(1, "loser"))
    (record,) = read_stream(store, "train")
    assert record["step"] == 1 and record["loss"] == engines[0].meta.loss


def test_commit_log_line_only_where_the_deployment_asks(tiny_run, monkeypatch, capfd):
    """With RELAYTRAIN_COMMIT_LOG=1 (set by the GCP stacks) every commit prints one structured JSON line on
    stderr that names the run, the gen and the step (RunMonitoring's log-based metrics read it); without it, none."""
    import json

    from relaytrain_runtime.report.logline import COMMIT_LOG_ENV, EVENT

    url = tiny_run(steps=4)
    monkeypatch.delenv(COMMIT_LOG_ENV, raising=False)
    run_leg(url, max_steps=2)
    assert EVENT not in capfd.readouterr().err
    monkeypatch.setenv(COMMIT_LOG_ENV, "1")
    status = run_leg(url, max_steps=2)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    commits = [line for line in lines if line.get("relaytrain") == EVENT]
    assert len(commits) == 1
    assert commits[0]["gen"] == status["gen"] and commits[0]["step"] == 4 and commits[0]["done"] is True
    assert commits[0]["run"] == url.rstrip("/").rsplit("/", 1)[-1] and commits[0]["val_loss"] == status["val_loss"]
