"""One leg: resume from the store, train until the time box closes, commit, return a status.

A leg needs nothing but the store URL. It is the engine (`engine.py`) under the `Deadline` policy:
it stops when the time left is less than the measured step time (+ the evaluation its commit will
run) + the measured (or, on the first leg, estimated) save time + a margin, so a 900 s Lambda leg
never loses its work to the timeout. Killing a leg at any instant loses at most the steps since its
last commit: the commit manifest is written last, atomically.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid

from relaytrain_runtime import RelayError
from relaytrain_runtime.engine import Engine, Policy, Worker
from relaytrain_runtime.spec import RunSpec

DEFAULT_MARGIN_S = 1.0
ASSUMED_SAVE_BPS = 100e6  # first-leg guess for the save time, until a save has been measured


_PROCESS_START_COUNTED = False


def process_age() -> float:
    """Seconds since this process started (Linux /proc; 0.0 where unavailable)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


def save_estimate(spec: RunSpec, commit: dict | None) -> float:
    """Seconds the commit will take: as measured by the leg that wrote `commit`, else a guess from the size."""
    if commit and commit.get("save_seconds"):
        return float(commit["save_seconds"])  # measured by the leg that wrote the checkpoint we resume from
    state_bytes = spec.model.param_count() * 4 * 3  # weights + two Adam moments, fp32
    return 0.2 + state_bytes / ASSUMED_SAVE_BPS


class Deadline(Policy):
    """A leg's stopping rule: stop before a step when time + that step (+ the evaluation the commit will
    run) + the save + a margin would pass the deadline; commit once, at the end."""

    def __init__(self, deadline: float | None, max_steps: int | None = None, margin_s: float = DEFAULT_MARGIN_S,
                 start_s: float = 0.0):
        self.deadline, self.max_steps, self.margin_s, self.start_s = deadline, max_steps, margin_s, start_s
        self.save_s = 0.0

    def begin(self, engine: Engine) -> None:
        self.save_s = save_estimate(engine.spec, engine.commit_record)
        engine.status.save_estimate_s = round(self.save_s, 3)
        engine.status.threads = engine.threads
        engine.status.seconds = {"start": round(self.start_s, 3), **engine.status.seconds}

    def stop_before(self, engine: Engine) -> bool:
        if self.deadline is None:
            return False
        step_s = engine.step_estimate()
        eval_s = engine.eval_estimate() if engine.eval_due(engine.meta.step + 1) else 0.0
        return time.time() + step_s + eval_s + self.save_s + self.margin_s > self.deadline

    def cost_reserve_s(self, engine: Engine) -> float:
        return self.save_s  # the save about to happen is billed by the commit that carries the cost


def run_leg(store_url: str, *, deadline: float | None = None, max_steps: int | None = None, spec: dict | None = None,
            cost_per_second: float = 0.0, cache_dir: str | None = None, margin_s: float = DEFAULT_MARGIN_S,
            on_step=None, threads: int | None = None) -> dict:
    """Run one leg against the run in `store_url`; see docs/RUNTIME.md for the status it returns.

    deadline: absolute time.time() by which the leg must have committed; max_steps: at most this many steps.
    on_step(step, loss): called after every optimizer step (progress reporting).
    """
    global _PROCESS_START_COUNTED
    # A warm process (a reused Lambda or Cloud Functions instance) pays its start-up once: only the
    # first leg of a process counts the time before it was entered.
    start_s = 0.0 if _PROCESS_START_COUNTED else process_age()
    _PROCESS_START_COUNTED = True
    engine = Engine(store_url, Worker(), leg_id=uuid.uuid4().hex[:8], cost_per_second=cost_per_second,
                    cache_dir=cache_dir, spec=spec, threads=threads, start_s=start_s, on_step=on_step)
    status = engine.run(Deadline(deadline, max_steps, margin_s, start_s))
    return status.to_dict()


def deadline_from(max_seconds: float | None) -> float | None:
    """The absolute deadline of a time box of `max_seconds` counted from this process's start, like a
    function's timeout: the interpreter's and imports' seconds are inside the box."""
    if max_seconds is None:
        return None
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise RelayError(f"--max-seconds must be > 0 (finite seconds), got {max_seconds}")
    return time.time() - process_age() + max_seconds


def progress_printer(stream=sys.stderr):
    def emit(step: int, loss: float) -> None:
        print("@progress " + json.dumps({"step": step, "loss": round(loss, 5)}), file=stream, flush=True)

    return emit
