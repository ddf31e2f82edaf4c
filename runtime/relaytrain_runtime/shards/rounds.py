"""The two sync algorithms as stateless operations on a run in a store.

A round starts from one baton commit (the parent) and ends with the next one:

    sync: gradients   round r = optimizer step r. Shard k computes the gradient of its slice
                      (rank k of K) of step r's global batch; the mean of the K gradients is the
                      global batch's gradient, and the commit applies the run's own AdamW step to it:
                      the same model as one worker with the same global batch.
    sync: diloco      round r = steps [rH, rH+H). Shard k takes H AdamW steps on its own slices
                      (the run's LR schedule; its AdamW moments persist across rounds in the store
                      under inner/, private to the shard, unless inner_state: reset), and sends its
                      parameter delta; the commit takes an outer Nesterov SGD step on the mean delta
                      (pseudo-gradient = -delta). Communication per step falls by H.

Operations (each one stateless; any of them may be killed, retried or duplicated):
    run_shard(run, round, k)      write shard k's vector as K piece objects
    reduce_round(run, round, js)  reduce pieces js; whoever sees all K pieces reduced commits
    commit_round(run, round)      assemble, update, commit the next baton with Baton.commit (create()
                                  fenced: of two committers, exactly one wins), sweep the round
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass

import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.keys import INNER_PREFIX, inner_key, round_of_inner_key
from relaytrain_runtime.contract.records import ShardStatus
from relaytrain_runtime.data import ensure_dataset
from relaytrain_runtime.engine import Engine
from relaytrain_runtime.model import model_tensors
from relaytrain_runtime.shards.config import ShardsConfig, init_config, load_config
from relaytrain_runtime.shards.exchange import Exchange, ExchangeError, Round, pack, sweep, unpack
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import NotFound, Store, open_store
from relaytrain_runtime.train import apply_update, lr_at, make_optimizer

DEADLINE_MARGIN_S = 1.0
MOMENTS = ("exp_avg", "exp_avg_sq")  # diloco: inner/<round>/<shard> holds shard k's AdamW moments after round r


class DeadlineTooShort(RelayError):
    pass


@dataclass
class Run:
    store: Store
    baton: Baton
    spec: RunSpec
    config: ShardsConfig


def open_run(store_url: str, spec: dict | None = None, functions: dict | None = None) -> Run:
    """The run in `store_url`; initialises its spec and shards config when given (idempotent).
    Both are validated together before anything is written."""
    store = open_store(store_url)
    baton = Baton(store)
    new_spec = RunSpec.from_dict(spec) if spec is not None else None
    new_config = ShardsConfig.from_dict(functions) if functions is not None else None
    if new_config is not None:
        new_config.check_batch((new_spec or baton.spec()).batch_size)
    if new_spec is not None:
        baton.init(new_spec)
    if new_config is not None:
        init_config(store, new_config)
    run_spec = baton.spec()
    config = load_config(store)
    config.check_batch(run_spec.batch_size)
    return Run(store, baton, run_spec, config)


def baton_digest(run: Run, commit: dict | None) -> str:
    """Identity of a round's parent: the commit manifest's digest (the initial model: the spec's)."""
    body = {"init": run.spec.digest()} if commit is None else commit
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def round_of(run: Run, step: int) -> int:
    """The round that starts at global step `step` (a finished run: the number of rounds)."""
    return run.config.rounds(step)


def _round(run: Run, rnd: int, digest: str) -> Round:
    kind = "grad" if run.config.sync == "gradients" else "delta"
    return Round(run=run.spec.digest(), round=rnd, baton=digest, shards=run.config.shards, kind=kind)


def _position(run: Run, meta: dict | None) -> dict:
    step = (meta or {}).get("step", 0)
    done = bool((meta or {}).get("done")) or step >= run.spec.steps
    return {"current_round": round_of(run, step), "step": step, "done": done, "loss": (meta or {}).get("loss")}


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])


def _unflat(vec: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, at = [], 0
    for t in like:
        out.append(vec[at:at + t.numel()].view_as(t).to(t.dtype))
        at += t.numel()
    return out


# ------------------------------------------------------------------------------------------ status


def round_status(run: Run) -> dict:
    """Where the run stands: the next round to run, step, done (reads the latest verified commit)."""
    ensure_dataset(run.store, run.spec)
    commit = run.baton.latest()
    meta = None if commit is None else {k: commit.get(k) for k in ("step", "done", "loss")}
    return {"status": "status", **_position(run, meta), "shards": run.config.shards, "sync": run.config.sync,
            "baton": baton_digest(run, commit), "warnings": run.baton.warnings}


# -------------------------------------------------------------------------------- diloco inner state


def _save_inner(run: Run, rnd: int, shard: int, digest: str, optimizer: torch.optim.Optimizer) -> int:
    sd = optimizer.state_dict()
    slots = [sd["state"][i] for i in sorted(sd["state"])]
    vec = torch.cat([slot[name].reshape(-1) for name in MOMENTS for slot in slots])
    head = {"run": run.spec.digest(), "round": rnd, "baton": digest, "shard": shard, "kind": "inner",
            "adam_step": float(slots[0]["step"])}
    blob = pack(head, vec, "fp32")
    run.store.write(inner_key(rnd, shard), blob)
    return len(blob)


def _load_inner(run: Run, meta: dict, rnd: int, shard: int, optimizer: torch.optim.Optimizer) -> int:
    """Restore shard `shard`'s AdamW moments saved in round `rnd` - 1 from the round's parent baton.
    Returns the bytes read (0: none usable, the shard starts with fresh moments)."""
    if rnd == 0 or not meta.get("shards_parent_baton"):
        return 0
    key = inner_key(rnd - 1, shard)
    try:
        data = run.store.read(key)
        head, vec = unpack(data, key)
    except (ExchangeError, NotFound):
        return 0
    want = {"run": run.spec.digest(), "round": rnd - 1, "baton": meta["shards_parent_baton"], "shard": shard}
    if any(head.get(k) != v for k, v in want.items()):
        return 0  # written by a shard of another baton: not this run's history
    params = [p for group in optimizer.param_groups for p in group["params"]]
    numel = sum(p.numel() for p in params)
    if vec.numel() != 2 * numel:
        return 0
    sd = optimizer.state_dict()
    index = [i for group in sd["param_groups"] for i in group["params"]]
    at = 0
    for name in MOMENTS:
        for i, p in zip(index, params, strict=True):
            slot = sd["state"].setdefault(i, {"step": torch.tensor(head["adam_step"])})
            slot[name] = vec[at:at + p.numel()].view_as(p).clone()
            at += p.numel()
    optimizer.load_state_dict(sd)
    return len(data)


def _sweep_inner(store: Store, before_round: int) -> None:
    for key in store.list(INNER_PREFIX):
        rnd = round_of_inner_key(key)
        if rnd is not None and rnd < before_round:
            store.delete(key)


# ------------------------------------------------------------------------------------------- shard


def _engine(run: Run, *, cost_per_second: float = 0.0, threads: int | None = None, cache_dir: str | None = None,
            t_enter: float | None = None) -> Engine:
    """The engine of one shard or commit op on this run (its own committer id: a losing committer
    deletes its own objects, never the winner's)."""
    start_s = time.time() - t_enter if t_enter else 0.0
    return Engine(run.store, leg_id=uuid.uuid4().hex[:8], cost_per_second=cost_per_second, cache_dir=cache_dir,
                  threads=threads, start_s=start_s, baton=run.baton)


def run_shard(run: Run, rnd: int, shard: int, *, deadline: float | None = None,
              cost_per_second: float = 0.0, threads: int | None = None, cache_dir: str | None = None) -> dict:
    t_enter = time.time()
    K = run.config.shards
    if not 0 <= shard < K:
        raise RelayError(f"shard {shard} is out of range: this run has {K} shards (0..{K - 1})")
    engine = _engine(run, threads=threads, cache_dir=cache_dir)
    engine.prepare_data()
    engine.resume(_run_optimizer(run))
    commit, meta = engine.commit_record, engine.meta.to_dict() if engine.commit_record else None
    pos = _position(run, meta)
    digest = baton_digest(run, commit)
    base = {"round": rnd, "shard": shard, "baton": digest, **pos}
    if pos["done"]:
        return ShardStatus(status="done", **base).to_dict()
    if pos["current_round"] != rnd:
        return ShardStatus(status="stale", **base).to_dict()  # committed already, or the baton is behind

    params = list(model_tensors(engine.model).values())
    state_read = state_written = 0
    t_load = time.time()
    first, stop = run.config.round_steps(rnd, run.spec.steps)
    if run.config.sync == "gradients":
        loss = engine.gradient(first, shard, K)
        vector = _flat(p.grad if p.grad is not None else torch.zeros_like(p) for p in params)
    else:
        theta0 = _flat(params)
        inner = make_optimizer(engine.model, run.spec)
        if run.config.inner_state == "keep":
            state_read = _load_inner(run, meta or {}, rnd, shard, inner)
        losses, step_s = [], 0.0
        for step in range(first, stop):
            if deadline is not None and time.time() + step_s + DEADLINE_MARGIN_S > deadline:
                raise DeadlineTooShort(f"round {rnd} shard {shard}: the invocation deadline arrives after "
                                       f"{step - first} of {stop - first} local steps; lower functions.local_steps "
                                       "or raise functions.timeout_s")
            t0 = time.perf_counter()
            losses.append(engine.local_step(inner, step, shard, K))
            step_s = max(step_s, time.perf_counter() - t0)
        loss = sum(losses) / len(losses)
        vector = _flat(params) - theta0
        if run.config.inner_state == "keep":
            state_written = _save_inner(run, rnd, shard, digest, inner)
    t_compute = time.time()
    seconds = t_compute - t_enter
    piece_meta = {"loss": loss, "weight": 1.0, "seconds": round(seconds, 4), "cost_usd": cost_per_second * seconds}
    written = Exchange(run.store, _round(run, rnd, digest), run.config.dtype).put_shard(shard, vector, piece_meta)
    return ShardStatus(status="ok", **{**base, "loss": loss}, bytes_written=written,
                       state_bytes={"read": state_read, "written": state_written},
                       seconds={"load": round(t_load - t_enter, 4), "compute": round(t_compute - t_load, 4),
                                "write": round(time.time() - t_compute, 4)}).to_dict()


# ------------------------------------------------------------------------------------------ reduce


def reduce_round(run: Run, rnd: int, pieces: list[int] | None = None, *, baton: str | None = None,
                 commit: bool = True, cost_per_second: float = 0.0) -> dict:
    """Reduce `pieces` (default: all K) of round `rnd`. If every piece is then reduced and `commit`,
    commit the round. `baton` is the round's parent digest as the shards reported it (saves
    reading the checkpoint to find it)."""
    t_enter = time.time()
    K = run.config.shards
    pieces = list(range(K)) if pieces is None else pieces
    for j in pieces:
        if not 0 <= j < K:
            raise RelayError(f"piece {j} is out of range: this run has {K} shards, so pieces 0..{K - 1}")
    if baton is None:
        latest = run.baton.latest()
        pos = _position(run, latest)
        if pos["done"] or pos["current_round"] != rnd:
            return {"status": "done" if pos["done"] else "stale", "round": rnd, **pos}
        baton = baton_digest(run, latest)
    ex = Exchange(run.store, _round(run, rnd, baton), run.config.dtype)
    read = written = 0
    for j in pieces:
        out = ex.reduce_piece(j, {"piece": j, "cost_usd": cost_per_second * (time.time() - t_enter)})
        read += out.get("bytes_read", 0)
        if out["status"] != "ok":
            pos = _position(run, run.baton.latest(verify=False))  # cheap: the newest manifest only
            if pos["done"] or pos["current_round"] > rnd:
                return {"status": "done" if pos["done"] else "stale", "round": rnd, **pos}
            return {"status": "missing", "round": rnd, "piece": j, "baton": baton, "missing": out["missing"],
                    "problems": out["problems"]}
        written += out["bytes_written"]
    status = {"status": "reduced", "round": rnd, "pieces": pieces, "baton": baton, "bytes_read": read,
              "bytes_written": written}
    if commit and ex.reduced_present() == list(range(K)):
        return {**status, **commit_round(run, rnd, baton, cost_per_second=cost_per_second, t_enter=t_enter)}
    return status


def commit_round(run: Run, rnd: int, baton: str, *, cost_per_second: float = 0.0, t_enter: float | None = None) -> dict:
    """Assemble round `rnd`'s reduced vector, update the parent state, commit the next baton (fenced)."""
    t_enter = t_enter or time.time()
    engine = _engine(run, cost_per_second=cost_per_second, t_enter=t_enter)
    diloco = run.config.sync == "diloco"
    engine.resume(_run_optimizer(run))
    parent = engine.commit_record
    if baton_digest(run, parent) != baton:
        pos = _position(run, engine.meta.to_dict() if parent else None)
        return {"status": "done" if pos["done"] else "stale", "round": rnd, **pos}
    t_assemble = time.perf_counter()
    try:
        vector, info = Exchange(run.store, _round(run, rnd, baton), run.config.dtype).assemble()
    except ExchangeError:
        # two reducers that both saw every piece reduced race to commit; the winner sweeps the round's objects
        # while the other assembles: that one lost the race, it did not fail
        pos = _position(run, run.baton.latest(verify=False))
        if pos["done"] or pos["current_round"] > rnd:
            return {"status": "lost_race", "round": rnd, **pos}
        raise
    comm_s = time.perf_counter() - t_assemble

    model, optimizer, spec = engine.model, engine.optimizer, run.spec
    params = list(model_tensors(model).values())
    first, stop = run.config.round_steps(rnd, spec.steps)
    record = {"kind": "train", "step": stop, "lr": lr_at(spec, stop - 1), "comm_s": comm_s}
    if not diloco:
        for p, g in zip(params, _unflat(vector, params), strict=True):
            p.grad = g.clone()
        record["grad_norm"] = apply_update(model, optimizer, spec, first)
    else:
        for p, d in zip(params, _unflat(vector, params), strict=True):
            p.grad = -d  # the outer pseudo-gradient: theta_start - mean(theta_local)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    metas = info["metas"]
    weight = sum(m.get("weight", 1.0) for m in metas.values())
    loss = sum(m["loss"] * m.get("weight", 1.0) for m in metas.values()) / weight
    round_cost = (sum(m.get("cost_usd", 0.0) for m in metas.values())
                  + sum(r.get("cost_usd", 0.0) for r in info["reducers"]))
    shard_max_s = max(m.get("seconds", 0.0) for m in metas.values())
    meta = engine.meta
    meta.step, meta.loss, meta.tokens = stop, loss, stop * spec.tokens_per_step
    meta.shards_round, meta.shards_parent_baton = rnd + 1, baton
    meta.timings = {"round_shard_max_s": shard_max_s}
    tokens = (stop - first) * spec.tokens_per_step
    engine.records.append({**record, "loss": loss, "tokens": meta.tokens, "step_s": shard_max_s,
                           "tokens_per_s": tokens / shard_max_s if shard_max_s else None})
    done = stop >= spec.steps
    if not engine.commit(extra_cost_usd=round_cost):
        return {"status": "lost_race", "round": rnd, "current_round": rnd + 1, "step": stop, "done": done}
    swept = sweep(run.store, rnd)
    _sweep_inner(run.store, rnd)  # the next round's shards read inner/<rnd>
    out = {"status": "committed", "round": rnd, "next_round": rnd + 1, "current_round": rnd + 1, "gen": engine.gen,
           "step": stop, "loss": loss, "done": done, "cost_usd": meta.cost_usd, "tokens": meta.tokens,
           "weights_sha256": engine.status.weights_sha256, "swept": swept, "commit_bytes_read": info["bytes_read"]}
    if engine.status.val_loss is not None:
        out["val_loss"] = engine.status.val_loss
    return out


def _run_optimizer(run: Run):
    """The optimizer a commit of this run carries: the spec's AdamW (None: the engine's default), or for
    DiLoCo the outer step, Nesterov SGD on the pseudo-gradient."""
    if run.config.sync != "diloco":
        return None

    def make(model):
        return torch.optim.SGD(list(model_tensors(model).values()), lr=run.config.outer_lr,
                               momentum=run.config.outer_momentum, nesterov=run.config.outer_momentum > 0,
                               foreach=False)
    return make
