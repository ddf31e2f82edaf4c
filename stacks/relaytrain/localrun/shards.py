"""`relaytrain run FILE --local` for `function-shards` blueprints: the cloud orchestrator, on this machine.

K worker processes stand in for K Cloud Functions (or Lambda) instances: each is a
`relaytrain-runtime shard --serve` process that serves one event at a time (shard, reduce or
status ops, JSON lines), and stays warm between rounds as a function instance does. Each round:

    shards   shard k runs on worker k, all K at once; a worker that dies (crash, chaos kill) is
             replaced by a fresh process (a cold start) and the event is retried; once the round
             deadline passes, every straggler gets a backup copy on an extra worker, the first
             copy to finish counts and a late one changes nothing
    reduce   piece j on worker j (parallel_reduce, as the cloud runs it) or all pieces on one
             worker; the reducer that completes the last piece commits the next baton

No torch here: everything that trains runs in the worker processes.
"""

from __future__ import annotations

import collections
import json
import queue
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from relaytrain.localrun.process import read_json, runtime
from relaytrain.worker import functions_payload, run_spec, spec_flags, spec_payload
from relaytrain.worker import round_deadline_s as worker_round_deadline_s
from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import SPEC_KEY

POLL_S = 0.01


class ShardsRunError(RelayError):
    pass


class _Worker:
    """One warm function instance: `python -m relaytrain_runtime shard --serve`."""

    def __init__(self):
        self.popen = subprocess.Popen([sys.executable, "-m", "relaytrain_runtime", "shard", "--serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1)
        self.results: queue.Queue = queue.Queue()
        self.stderr: collections.deque = collections.deque(maxlen=20)
        self.event: dict | None = None
        self.started = 0.0
        self.kill_at: float | None = None
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.popen.stderr), daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.popen.stdout:
            try:
                self.results.put(json.loads(line))
            except ValueError:
                continue
        self.results.put(None)  # the process is gone

    def submit(self, event: dict, kill_at: float | None = None) -> None:
        self.event, self.started, self.kill_at = event, time.time(), kill_at
        try:
            self.popen.stdin.write(json.dumps(event) + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: poll() reports it

    def poll(self) -> dict | str | None:
        """The event's result, "dead" if the process is gone, None while it runs. An invocation chosen for a
        chaos kill dies at its kill time, or at its reply if that comes first (the reply is lost, as for a
        function killed after writing its objects): whether a chosen invocation is killed never depends
        on how fast the machine is."""
        if self.kill_at is not None and (time.time() >= self.kill_at or not self.results.empty()):
            self.kill()
            return "killed"
        try:
            out = self.results.get_nowait()
        except queue.Empty:
            return None
        return "dead" if out is None else out

    @property
    def busy(self) -> bool:
        return self.event is not None

    def last_error(self) -> str:
        lines = [ln.strip() for ln in self.stderr if ln.strip()]
        return lines[-1] if lines else f"exit {self.popen.poll()}"

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def close(self) -> None:
        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class RoundReport:
    round: int
    seconds: float = 0.0
    shard_seconds: list[float] = field(default_factory=list)  # successful invocations' durations
    reduce_seconds: float = 0.0  # function-seconds of the reduce invocations
    retries: int = 0
    backups: int = 0
    killed: int = 0
    bytes_written: int = 0
    loss: float | None = None


def _blueprint_settings(blueprint) -> tuple[dict, dict]:
    if getattr(blueprint, "topology", None) != "function-shards":
        raise ShardsRunError(f"blueprint {getattr(blueprint, 'name', '?')!r} has topology "
                             f"{getattr(blueprint, 'topology', None)!r}; the shards runner needs function-shards")
    return spec_payload(blueprint), functions_payload(blueprint)


def _prepared(blueprint, store_url: str, training: dict) -> dict:
    """A pretrained start is prepared by the runtime's `init` (its base stored once, by digest; the shards'
    status op refuses an unprepared one); the shards then get the spec as stored."""
    if not training.get("init_from"):
        return training
    runtime("init", ["--store", store_url, *spec_flags(run_spec(blueprint))], threads=1, capture=True)
    return read_json(store_url, SPEC_KEY)


class _Pool:
    """K warm workers plus spares for backups; replaces dead ones; runs a batch of events to completion."""

    def __init__(self, size: int, max_retries: int, kill_prob: float, chaos: random.Random):
        self.workers = [_Worker() for _ in range(size)]
        self.max_retries, self.kill_prob, self.chaos = max_retries, kill_prob, chaos

    def _chaos_kill_at(self) -> float | None:
        if self.kill_prob and self.chaos.random() < self.kill_prob:
            return time.time() + self.chaos.uniform(0.0, 1.0)
        return None

    def _fresh(self, i: int) -> _Worker:
        """Worker i, replaced by a new process if it died or was stopped mid-event."""
        if self.workers[i].popen.poll() is not None:
            self.workers[i] = _Worker()
        return self.workers[i]

    def run(self, events: list[dict], rep: RoundReport, deadline_s: float | None = None,
            finished=lambda out: True) -> list[dict]:
        """Run events[i] on worker i; retry on a worker's death; back up stragglers after `deadline_s`.
        Returns the first successful result of each event (with its "_seconds"), or early, the one
        result for which `finished(result)` is False (e.g. a shard saying the round is over)."""
        running = {i: [self._fresh(i)] for i in range(len(events))}  # event -> workers running a copy
        for i, (w,) in running.items():
            w.submit(events[i], self._chaos_kill_at())
        attempts = {i: 1 for i in running}
        results: dict[int, dict] = {}
        spares: list[_Worker] = []
        t0 = time.time()
        try:
            while len(results) < len(events):
                time.sleep(POLL_S)
                for i, copies in running.items():
                    for w in [] if i in results else list(copies):
                        out = w.poll()
                        if out is None:
                            continue
                        copies.remove(w)
                        if isinstance(out, dict):
                            w.event = None
                            if "error" in out:  # a RelayError: the same event would fail again
                                raise ShardsRunError(
                                    f"{events[i]['op']} {_label(events[i])}: {out['error']['message']}")
                            if not finished(out):
                                return [out]
                            results[i] = {**out, "_seconds": time.time() - w.started}
                            break
                        # the process died (chaos kill, crash, out of memory): a cold replacement retries
                        rep.killed += out == "killed"
                        w.kill()
                        if copies:
                            continue  # another copy is still running
                        if attempts[i] > self.max_retries:
                            raise ShardsRunError(f"{events[i]['op']} {_label(events[i])} failed {attempts[i]} times; "
                                                 f"last error: {w.last_error()}")
                        attempts[i] += 1
                        rep.retries += 1
                        fresh = self._replace(w, spares)
                        fresh.submit(events[i], self._chaos_kill_at())
                        copies.append(fresh)
                if deadline_s and time.time() - t0 > deadline_s:
                    for i, copies in running.items():
                        if i not in results and len(copies) == 1:  # one backup copy per straggler
                            rep.backups += 1
                            backup = self._spare(spares)
                            backup.submit(events[i])
                            copies.append(backup)
        finally:
            for copies in running.values():
                for w in copies:  # stragglers and losing copies: stopped; their late writes change nothing
                    w.kill()
                    w.event = None
            for w in spares:
                w.kill()
        return [results[i] for i in range(len(events))]

    def _replace(self, dead: _Worker, spares: list) -> _Worker:
        for idx, w in enumerate(self.workers):
            if w is dead:
                self.workers[idx] = _Worker()
                return self.workers[idx]
        return self._spare(spares)

    def _spare(self, spares: list) -> _Worker:
        w = _Worker()
        spares.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.close()


def _label(event: dict) -> str:
    parts = [f"round {event.get('round')}"] if "round" in event else []
    for key in ("shard", "piece"):
        if event.get(key) is not None:
            parts.append(f"{key} {event[key]}")
    return " ".join(parts) or "(status)"


def run_local(blueprint, store_url: str, *, max_rounds: int | None = None, parallel_reduce: bool = True,
              max_retries: int = 3, round_deadline_s: float | None = None, kill_prob: float = 0.0,
              chaos_seed: int = 0, log=print) -> dict:
    """Train a function-shards blueprint to completion (or `max_rounds`) with K local worker processes.

    `round_deadline_s` overrides the blueprint's (0/None: its function timeout). `kill_prob`
    SIGKILLs each invocation with that probability within its first second, or at its reply if it
    finishes sooner (chaos testing, reproducible from `chaos_seed`: the run still ends with the same
    model). Returns a summary dict (seconds are function-seconds).
    """
    training, functions = _blueprint_settings(blueprint)
    training = _prepared(blueprint, store_url, training)
    K = functions["shards"]
    deadline = round_deadline_s or worker_round_deadline_s(blueprint)
    log = log or (lambda *_: None)
    base = {"store": store_url}
    pool = _Pool(K, max_retries, kill_prob, random.Random(chaos_seed))
    reports: list[RoundReport] = []
    t_run = time.time()
    try:
        boot = RoundReport(round=-1)
        state = pool.run([{**base, "op": "status", "spec": training, "functions": functions}], boot)[0]
        rnd = state["current_round"]
        while not state.get("done") and (max_rounds is None or len(reports) < max_rounds):
            t0 = time.time()
            rep = RoundReport(round=rnd)
            shards = pool.run([{**base, "op": "shard", "round": rnd, "shard": k, "shards": K} for k in range(K)],
                              rep, deadline, finished=lambda out: out.get("status") == "ok")
            if shards[0].get("status") != "ok":  # the round was over already (a resumed or raced run)
                state, rnd = shards[0], shards[0]["current_round"]
                continue
            rep.shard_seconds = [s["_seconds"] for s in shards]
            rep.bytes_written = sum(int(s.get("bytes_written", 0)) for s in shards)
            reduce = {**base, "op": "reduce", "round": rnd, "baton": shards[0]["baton"]}
            events = [{**reduce, "piece": j} for j in range(K)] if parallel_reduce else [reduce]
            outs = pool.run(events, rep, deadline)
            rep.reduce_seconds = sum(o["_seconds"] for o in outs)
            state = _committed(rnd, outs)
            rep.seconds, rep.loss = time.time() - t0, state.get("loss")
            reports.append(rep)
            log(f"round {rnd}: step {state.get('step')} loss {_fmt(rep.loss)} | shards "
                f"{max(rep.shard_seconds):.2f}s (slowest of {K}) reduce {rep.reduce_seconds:.2f}s | "
                f"retries {rep.retries} backups {rep.backups} | exchanged {rep.bytes_written / 1e6:.2f} MB")
            rnd = state.get("next_round", rnd + 1)
    finally:
        pool.close()

    summary = {
        "store": store_url, "shards": K, "sync": functions.get("sync", "gradients"), "rounds": len(reports),
        "done": bool(state.get("done")), "step": state.get("step"), "loss": state.get("loss"),
        "val_loss": state.get("val_loss"), "wall_s": round(time.time() - t_run, 3),
        "shard_seconds": round(sum(sum(r.shard_seconds) for r in reports), 3),
        "reduce_seconds": round(sum(r.reduce_seconds for r in reports), 3),
        "retries": sum(r.retries for r in reports), "backups": sum(r.backups for r in reports),
        "killed": sum(r.killed for r in reports), "bytes_exchanged": sum(r.bytes_written for r in reports),
        "rounds_detail": [r.__dict__ for r in reports],
    }
    log(f"{summary['rounds']} rounds of {K} shards in {summary['wall_s']:.1f}s: step {summary['step']} "
        f"loss {_fmt(summary['loss'])} done={summary['done']} | shard-seconds {summary['shard_seconds']:.1f} "
        f"reduce-seconds {summary['reduce_seconds']:.1f} | retries {summary['retries']} backups {summary['backups']}")
    return summary


def _committed(rnd: int, outs: list[dict]) -> dict:
    for status in ("committed", "stale", "done", "lost_race"):
        for out in outs:
            if out.get("status") == status:
                return out
    missing = next((o for o in outs if o.get("status") == "missing"), None)
    if missing is not None:
        raise ShardsRunError(f"round {rnd}: reduce found shard objects missing or invalid: {missing.get('missing')} "
                             f"({'; '.join(missing.get('problems', []))})")
    raise ShardsRunError(f"round {rnd}: every piece was reduced but no reducer committed ({outs})")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"
