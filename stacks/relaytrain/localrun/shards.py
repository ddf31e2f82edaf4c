"""`relaytrain run FILE --local` for `function-shards` blueprints: the cloud orchestrator, on this machine.

Each round runs K `relaytrain-runtime shard` processes at once (the Cloud Functions / Lambda
Map of the cloud topology), retries a shard that fails, and once the round deadline passes
launches a backup copy of every straggler (whichever finishes first counts; the late copy
changes nothing). Then the reducers run (one process for all K pieces, or K parallel
processes with `parallel_reduce=True`, as the cloud does), the last of them commits the
next baton, and the round's exchange objects are swept.

No torch here: everything that trains runs in subprocesses.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field

from relaytrain_runtime import RelayError

POLL_S = 0.02


class ShardsRunError(RelayError):
    pass


@dataclass
class _Proc:
    shard: int
    popen: subprocess.Popen
    started: float
    backup: bool = False
    kill_at: float | None = None  # chaos: SIGKILL at this time


@dataclass
class RoundReport:
    round: int
    seconds: float
    shard_seconds: list[float] = field(default_factory=list)  # successful invocations' durations
    reduce_seconds: float = 0.0
    retries: int = 0
    backups: int = 0
    killed: int = 0
    bytes_written: int = 0
    loss: float | None = None


def _runtime_cmd(verb: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "relaytrain_runtime", verb, *args]


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            out = json.loads(line)
        except ValueError:
            continue
        if isinstance(out, dict):
            return out
    return None


def _blueprint_settings(blueprint) -> tuple[dict, dict]:
    if getattr(blueprint, "topology", None) != "function-shards":
        raise ShardsRunError(f"blueprint {getattr(blueprint, 'name', '?')!r} has topology "
                             f"{getattr(blueprint, 'topology', None)!r}; the shards runner needs function-shards")
    functions = blueprint.functions.model_dump() if blueprint.functions is not None else {}
    return blueprint.training.model_dump(), functions


def run_local(blueprint, store_url: str, *, max_rounds: int | None = None, parallel_reduce: bool = False,
              max_retries: int = 3, round_deadline_s: float | None = None, kill_prob: float = 0.0,
              chaos_seed: int = 0, log=print) -> dict:
    """Train a function-shards blueprint to completion (or `max_rounds`) in local processes.

    `round_deadline_s` overrides the blueprint's (0/None: the function timeout). `kill_prob`
    SIGKILLs each shard invocation with that probability at a random moment (chaos testing;
    the run must still end with the same model). Returns a summary dict.
    """
    training, functions = _blueprint_settings(blueprint)
    K = int(functions.get("shards", 4))
    deadline = round_deadline_s or functions.get("round_deadline_s") or functions.get("timeout_s") or 3600
    chaos = random.Random(chaos_seed)
    spec_json, functions_json = json.dumps(training), json.dumps(functions)
    log = log or (lambda *_: None)

    reports: list[RoundReport] = []
    state: dict = {}
    rnd = _current_round(store_url, spec_json, functions_json)
    t_run = time.time()
    while not state.get("done") and (max_rounds is None or len(reports) < max_rounds):
        t0 = time.time()
        rep = RoundReport(round=rnd, seconds=0.0)
        outcome = _run_shards(store_url, rnd, K, spec_json, functions_json, deadline, max_retries,
                              kill_prob, chaos, rep)
        if outcome.get("status") in ("stale", "done"):
            state = outcome
            rnd = outcome.get("current_round", rnd)
            continue
        t1 = time.time()
        state = _run_reduce(store_url, rnd, K, parallel_reduce)
        rep.reduce_seconds = time.time() - t1
        rep.seconds = time.time() - t0
        rep.loss = state.get("loss")
        reports.append(rep)
        log(f"round {rnd}: step {state.get('step')} loss {_fmt(rep.loss)} | shards "
            f"{max(rep.shard_seconds, default=0):.2f}s (max of {K}) reduce {rep.reduce_seconds:.2f}s | "
            f"retries {rep.retries} backups {rep.backups} | exchanged {rep.bytes_written / 1e6:.2f} MB")
        rnd = state.get("next_round", rnd + 1)

    summary = {
        "store": store_url, "shards": K, "rounds": len(reports), "done": bool(state.get("done")),
        "step": state.get("step"), "loss": state.get("loss"), "wall_s": round(time.time() - t_run, 3),
        "shard_seconds": round(sum(sum(r.shard_seconds) for r in reports), 3),
        "reduce_seconds": round(sum(r.reduce_seconds for r in reports), 3),
        "retries": sum(r.retries for r in reports), "backups": sum(r.backups for r in reports),
        "killed": sum(r.killed for r in reports),
        "bytes_exchanged": sum(r.bytes_written for r in reports),
        "rounds_detail": [r.__dict__ for r in reports],
    }
    log(f"{summary['rounds']} rounds of {K} shards in {summary['wall_s']:.1f}s: step {summary['step']} "
        f"loss {_fmt(summary['loss'])} done={summary['done']} | shard-seconds {summary['shard_seconds']:.1f} "
        f"reduce-seconds {summary['reduce_seconds']:.1f} | retries {summary['retries']} backups {summary['backups']}")
    return summary


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _current_round(store_url: str, spec_json: str, functions_json: str) -> int:
    """Initialise the run if needed and return the round to run next (resumes an existing run)."""
    out = subprocess.run(_runtime_cmd("reduce", "--store", store_url, "--status", "--spec-json", spec_json,
                                      "--functions-json", functions_json), capture_output=True, text=True)
    status = _last_json(out.stdout)
    if out.returncode != 0 or status is None:
        raise ShardsRunError(_failure("reduce --status", out))
    return int(status["current_round"])


def _failure(what: str, out) -> str:
    err = (out.stderr or "").strip().splitlines()
    return f"{what} failed (exit {out.returncode}): {err[-1] if err else 'no output'}"


def _run_shards(store_url, rnd, K, spec_json, functions_json, deadline, max_retries, kill_prob, chaos, rep) -> dict:
    """Run shards 0..K-1 of round `rnd` until each has succeeded once. Returns the last status."""

    def launch(k: int, backup: bool = False) -> _Proc:
        args = ["--store", store_url, "--round", str(rnd), "--shard", str(k), "--shards", str(K),
                "--spec-json", spec_json, "--functions-json", functions_json]
        p = subprocess.Popen(_runtime_cmd("shard", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc = _Proc(k, p, time.time(), backup)
        if kill_prob and chaos.random() < kill_prob:
            proc.kill_at = proc.started + chaos.uniform(0.0, 3.0)
        return proc

    t0 = time.time()
    running = [launch(k) for k in range(K)]
    done: dict[int, dict] = {}
    attempts = {k: 1 for k in range(K)}
    backed_up: set[int] = set()
    last: dict = {}
    try:
        while len(done) < K:
            time.sleep(POLL_S)
            now = time.time()
            for proc in list(running):
                if proc.kill_at is not None and now >= proc.kill_at and proc.popen.poll() is None:
                    proc.popen.kill()
                    rep.killed += 1
                if proc.popen.poll() is None:
                    continue
                running.remove(proc)
                stdout, stderr = proc.popen.communicate()
                status = _last_json(stdout) if proc.popen.returncode == 0 else None
                if status and status.get("status") in ("stale", "done"):
                    return status  # the round was already committed (a resumed or raced orchestrator)
                if status and status.get("status") == "ok":
                    if proc.shard not in done:
                        done[proc.shard] = status
                        rep.shard_seconds.append(now - proc.started)
                        rep.bytes_written += int(status.get("bytes_written", 0))
                        last = status
                    continue
                if proc.shard in done or any(p.shard == proc.shard for p in running):
                    continue  # a copy already succeeded or is still running
                if attempts[proc.shard] > max_retries:
                    why = (stderr or "").strip().splitlines()
                    raise ShardsRunError(f"round {rnd} shard {proc.shard} failed {attempts[proc.shard]} times; "
                                         f"last error: {why[-1] if why else f'exit {proc.popen.returncode}'}")
                attempts[proc.shard] += 1
                rep.retries += 1
                running.append(launch(proc.shard))
            if now - t0 > deadline:  # stragglers: one backup copy each, the first to finish counts
                for k in range(K):
                    if k not in done and k not in backed_up:
                        backed_up.add(k)
                        rep.backups += 1
                        running.append(launch(k, backup=True))
    finally:
        for proc in running:  # copies still running once every shard has succeeded
            if proc.popen.poll() is None:
                proc.popen.kill()
            proc.popen.communicate()
    return last


def _run_reduce(store_url: str, rnd: int, K: int, parallel: bool) -> dict:
    base = ["--store", store_url, "--round", str(rnd)]
    if not parallel:
        out = subprocess.run(_runtime_cmd("reduce", *base), capture_output=True, text=True)
        status = _last_json(out.stdout)
        if out.returncode != 0 or status is None:
            raise ShardsRunError(_failure(f"round {rnd} reduce", out))
        return _check_reduce(rnd, status)
    procs = [subprocess.Popen(_runtime_cmd("reduce", *base, "--piece", str(j)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for j in range(K)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate()
        status = _last_json(stdout)
        if p.returncode != 0 or status is None:
            raise ShardsRunError(_failure(f"round {rnd} reduce", subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)))
        results.append(_check_reduce(rnd, status))
    committed = [r for r in results if r.get("status") in ("committed", "stale", "done")]
    if not committed:
        raise ShardsRunError(f"round {rnd}: every piece was reduced but no reducer committed ({results})")
    return next((r for r in committed if r["status"] == "committed"), committed[0])


def _check_reduce(rnd: int, status: dict) -> dict:
    if status.get("status") == "missing":
        raise ShardsRunError(f"round {rnd}: reduce found shard objects missing or invalid: {status.get('missing')} "
                             f"({'; '.join(status.get('problems', []))})")
    return status
