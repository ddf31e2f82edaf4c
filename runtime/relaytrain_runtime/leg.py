"""One leg: resume from the store, train until the time box closes, commit, return a status.

A leg needs nothing but the store URL. It stops when the time left is less than the measured step
time + the measured (or, on the first leg, estimated) save time + a margin, so a 900 s Lambda leg
never loses its work to the timeout. Killing a leg at any instant loses at most the steps since its
last commit: the commit manifest is written last, atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from relaytrain_runtime import RelayError, determinism
from relaytrain_runtime.baton import EVAL_PREFIX, Baton
from relaytrain_runtime.data import ensure_dataset, open_dataset
from relaytrain_runtime.model import model_tensors
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import build, evaluate, lr_at, train_step

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


def _save_estimate(spec: RunSpec, commit: dict | None) -> float:
    if commit and commit.get("save_seconds"):
        return float(commit["save_seconds"])  # measured by the leg that wrote the checkpoint we resume from
    state_bytes = spec.model.param_count() * 4 * 3  # weights + two Adam moments, fp32
    return 0.2 + state_bytes / ASSUMED_SAVE_BPS


def run_leg(store_url: str, *, deadline: float | None = None, max_steps: int | None = None, spec: dict | None = None,
            cost_per_second: float = 0.0, cache_dir: str | None = None, margin_s: float = DEFAULT_MARGIN_S,
            on_step=None, threads: int | None = None) -> dict:
    """Run one leg against the run in `store_url`; see docs/ARCHITECTURE.md for the status it returns.

    deadline: absolute time.time() by which the leg must have committed; max_steps: at most this many steps.
    on_step(step, loss): called after every optimizer step (progress reporting).
    """
    t_enter = time.time()
    global _PROCESS_START_COUNTED
    # A warm process (a reused Lambda or Cloud Functions instance) pays its start-up once: only the
    # first leg of a process counts the time before it was entered.
    start_s = 0.0 if _PROCESS_START_COUNTED else process_age()
    _PROCESS_START_COUNTED = True
    leg_id = uuid.uuid4().hex[:8]
    store = open_store(store_url)
    baton = Baton(store)
    if spec is not None:
        baton.init(RunSpec.from_dict(spec) if isinstance(spec, dict) else spec)
    run_spec = baton.spec()
    threads = determinism.configure(threads)
    ensure_dataset(store, run_spec)
    dataset = open_dataset(store, run_spec, cache_dir)
    commit, state = baton.resume()
    model, optimizer = build(run_spec, state, store=store)
    meta = {"step": 0, "tokens": 0, "loss": None, "done": False, "cost_usd": 0.0, "timings": {},
            "metrics": {"train": [], "eval": []}, "spec_digest": run_spec.digest()}
    parent_gen = 0
    if state is not None:
        determinism.restore_rng(state["meta"]["rng"])
        meta.update({k: v for k, v in state["meta"].items() if k in meta})
        parent_gen = commit["gen"]
    load_s = time.time() - t_enter

    step0 = meta["step"]
    status = {"status": "ok", "done": meta["done"], "step": step0, "gen": parent_gen, "loss": meta["loss"],
              "tokens": meta["tokens"], "cost_usd": meta["cost_usd"], "leg_steps": 0, "leg_id": leg_id,
              "store": store.url, "warnings": baton.warnings, "threads": threads,
              "seconds": {"start": round(start_s, 3), "load": round(load_s, 3), "train": 0.0, "save": 0.0}}
    if step0 >= run_spec.steps:  # (a run whose steps were raised after it was done trains on)
        status.update(status="done", done=True)
        return status

    # ---- train until the time box closes
    t_train = time.time()
    save_est = _save_estimate(run_spec, commit)
    status["save_estimate_s"] = round(save_est, 3)
    step_times: list[float] = []
    step = step0
    while step < run_spec.steps and (max_steps is None or step - step0 < max_steps):
        if deadline is not None:
            step_est = max(step_times[-8:]) if step_times else float(meta["timings"].get("step") or 0.0)
            finishing = step + 1 >= run_spec.steps
            eval_est = step_est * run_spec.eval_batches * run_spec.micro_batch / run_spec.batch_size if finishing else 0.0
            if time.time() + step_est + eval_est + save_est + margin_s > deadline:
                break
        t0 = time.perf_counter()
        loss = train_step(model, optimizer, run_spec, dataset, step)
        step_times.append(time.perf_counter() - t0)
        step += 1
        meta["metrics"]["train"].append([step, loss, lr_at(run_spec, step - 1)])
        meta.update(step=step, loss=loss, tokens=step * run_spec.tokens_per_step)
        if on_step is not None:
            on_step(step, loss)
    leg_steps = step - step0
    done = step >= run_spec.steps
    if done:
        val = evaluate(model, run_spec, dataset)
        meta["metrics"]["eval"].append([step, val])
        meta["val_loss"] = val
    train_s = time.time() - t_train
    if leg_steps == 0:
        status["seconds"]["train"] = round(train_s, 3)
        return status

    # ---- commit
    t_save = time.time()
    meta["done"] = done
    meta["rng"] = determinism.capture_rng()
    meta["timings"] = {"step": sum(step_times) / len(step_times)}
    # the worker's seconds so far, plus the save about to happen (estimated: the commit carries the cost)
    meta["cost_usd"] = meta["cost_usd"] + cost_per_second * (time.time() - t_enter + start_s + save_est)
    weights = {k: v.detach() for k, v in model_tensors(model).items()}
    new = baton.commit(parent_gen, {"weights": weights, "optimizer": optimizer.state_dict(), "meta": meta},
                       leg_id=leg_id)
    save_s = time.time() - t_save
    status.update(step=step, loss=meta["loss"], tokens=meta["tokens"], cost_usd=meta["cost_usd"], leg_steps=leg_steps,
                  done=done and new is not None)
    status["seconds"].update(train=round(train_s, 3), save=round(save_s, 3))
    if new is None:
        status["status"] = "lost_race"
        return status
    status.update(gen=new["gen"], status="done" if done else "ok", weights_sha256=new["weights_sha256"])
    if done:
        status["val_loss"] = meta["val_loss"]
        store.write(f"{EVAL_PREFIX}{new['gen']:08d}.json",
                    json.dumps({"gen": new["gen"], "step": step, "loss": meta["val_loss"],
                                "perplexity": _exp(meta["val_loss"])}).encode())
    baton.prune(run_spec.keep_last)
    status["seconds"]["save"] = round(time.time() - t_save, 3)
    baton.write_leg_status(new["gen"], leg_id, status)
    return status


def _exp(x: float) -> float:
    import math

    return math.exp(x) if x < 700 else float("inf")


def deadline_from(max_seconds: float | None) -> float | None:
    """The absolute deadline of a time box of `max_seconds` counted from this process's start, like a
    function's timeout: the interpreter's and imports' seconds are inside the box."""
    if max_seconds is None:
        return None
    if max_seconds <= 0:
        raise RelayError(f"--max-seconds must be > 0, got {max_seconds}")
    return time.time() - process_age() + max_seconds


def progress_printer(stream=sys.stderr):
    def emit(step: int, loss: float) -> None:
        print("@progress " + json.dumps({"step": step, "loss": round(loss, 5)}), file=stream, flush=True)

    return emit
