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
