"""The local relay (`train`): legs in fresh processes until done, the report, and the learning check."""

import json
import os
import subprocess
import sys

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store


def test_train_relays_legs_and_matches_one_leg(tiny_run, tmp_path):
    reference = tiny_run(steps=7)
    run_leg(reference)
    url = f"file://{tmp_path}/relay"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "train", "--store", url, "--preset", "tiny-gpt",
                           "--steps", "7", "--seed", "7", "--batch-size", "4", "--seq-len", "32",
                           "--eval-batches", "2", "--lr", "0.001", "--warmup-steps", "2", "--leg-steps", "3"],
                          capture_output=True, text=True,
                          env={**os.environ, "RELAYTRAIN_TENSORBOARD_DIR": str(tmp_path / "tb")})
    assert proc.returncode == 0, proc.stderr
    store = open_store(url)
    final = Baton(store).latest()
    assert final["weights_sha256"] == Baton(open_store(reference)).latest()["weights_sha256"]
    # the per-leg table: a header and three legs of 3, 3 and 1 steps
    table = [line.split() for line in proc.stderr.splitlines() if line.strip().startswith(("leg ", "1 ", "2 ", "3 "))]
    assert table[0][:3] == ["leg", "steps", "step"] and [row[1] for row in table[1:4]] == ["3", "3", "1"]
    assert "done: tiny-gpt 7/7 steps in 3 leg(s)" in proc.stderr
    assert store.read("report/loss.png").startswith(b"\x89PNG")
    summary = json.loads(store.read("report/summary.json"))
    assert summary["done"] and summary["legs"] == 3 and summary["val_loss"] > 0
    # each leg's commit was published live as it landed (publishing only at the end would give the last leg's step)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Tensors("train/loss")] == list(range(1, 8))
    assert len({e.wall_time for e in events.Tensors("train/loss")}) == 3  # one commit per leg
    # running it again is a no-op on a finished run
    again = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "train", "--store", url],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "7/7 steps in 0 leg(s)" in again.stderr


def test_a_leg_too_short_for_one_step_is_a_clear_error(tiny_run):
    url = tiny_run(steps=3)
    proc = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "train", "--store", url, "--leg-seconds", "0.01",
                           "--max-retries", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "use a larger --leg-seconds" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_tiny_gpt_learns_below_the_unigram_baseline(tiny_run):
    """The learning check, scaled down (docs/RUNTIME.md has the full demo: 300 steps, val 4.07 vs 6.42): after
    120 small steps the held-out loss is half a nat below the unigram entropy, the best any context-free model
    can do, so the model uses context."""
    url = tiny_run(steps=120, batch_size=8, seq_len=64, lr=2e-3, min_lr=2e-4, warmup_steps=10, eval_batches=4)
    status = run_leg(url)
    baseline = json.loads(open_store(url).read("data/manifest.json"))["unigram_entropy_nats"]
    assert status["done"] and status["val_loss"] < baseline - 0.5, (status["val_loss"], baseline)


def test_progress_is_a_bar_on_a_tty_and_plain_lines_otherwise():
    import io

    from relaytrain_runtime.relay import Progress

    tty, plain = io.StringIO(), io.StringIO()
    bar, lines = Progress(100, tty, tty=True), Progress(100, plain, tty=False)
    for step in range(1, 101):
        bar.update(step, 1 + step // 40, 5.0 - step / 100)
        lines.update(step, 1 + step // 40, 5.0 - step / 100)
    bar.close()
    assert tty.getvalue().count("\r[") == 100 and "step 100/100  leg 3" in tty.getvalue()
    assert "\r" not in plain.getvalue() and len(plain.getvalue().splitlines()) == 11  # 0 %, 10 %, ... 100 %
