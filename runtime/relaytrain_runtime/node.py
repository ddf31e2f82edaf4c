"""The GPU/VM node: train continuously, checkpoint every few minutes, survive preemption.

    relaytrain-runtime node --store s3://bucket/run [--checkpoint-every 600] [--poweroff-when-done]
    torchrun --nproc-per-node 4 -m relaytrain_runtime node --store ...      # data-parallel (DDP)

- On boot it resumes from the newest checkpoint in the store (the same baton the legs use).
- It commits a checkpoint every `checkpoint_every` seconds (time-based, so the work at risk is
  bounded in time whatever the step time).
- On SIGTERM (EC2 spot notice via the instance's shutdown, GCE preemption's ACPI soft-off, a
  plain shutdown) it finishes the step in flight, commits, and exits 0 well within the notice
  (AWS: 2 minutes, GCE: ~30 s) as long as one step plus one save fits in it.
- Under torchrun each rank trains its slice of the global batch (`data.batch(spec, step, rank,
  world)`) in DistributedDataParallel: NCCL on GPUs, gloo on CPU. The global batch is the run
  spec's, so the result matches one process with the same batch (within float rounding of the
  all-reduce). Rank 0 commits; decisions to checkpoint or stop are all-reduced every step, so all
  ranks stop at the same step.
- When the run is done it can power the machine off (`--poweroff-when-done`, command in
  RELAYTRAIN_POWEROFF_CMD, default `sudo shutdown -h now`) so billing stops; set the instance to
  terminate on shutdown (EC2 `InstanceInitiatedShutdownBehavior=terminate`) to release it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

import torch
import torch.distributed as dist

from relaytrain_runtime import determinism
from relaytrain_runtime.baton import EVAL_PREFIX, Baton
from relaytrain_runtime.data import batch, ensure_dataset, open_dataset
from relaytrain_runtime.model import model_tensors
from relaytrain_runtime.store import open_store
from relaytrain_runtime.train import apply_update, build, evaluate, forward_backward, lr_at, restore

DEFAULT_POWEROFF_CMD = "sudo shutdown -h now"


class _Stop:
    """Set by SIGTERM/SIGINT; the training loop checks it between steps."""

    def __init__(self):
        self.signal: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signal = signum


def _setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world, device) from torchrun's environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _all_max(values: list[float], world: int, device) -> list[float]:
    """Element-wise max over ranks (every rank gets the same answer)."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _all_mean(value: float, world: int, device) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / world


def run_node(store_url: str, *, checkpoint_every: float = 600.0, max_steps: int | None = None,
             cost_per_second: float = 0.0, cache_dir: str | None = None, poweroff_when_done: bool = False,
             on_step=None) -> dict:
    """Train the run in `store_url` until done, stopped (SIGTERM) or `max_steps` more steps. Returns the
    node status (rank 0's is the one that matters): the leg status fields plus `commits` and `stopped_by`.

    cost_per_second: what the whole job (every machine of it) costs per second; accrued into the run."""
    t_enter = time.time()
    stop = _Stop()
    stop.install()
    rank, world, device = _setup_distributed()
    node_id = f"node{uuid.uuid4().hex[:6]}"
    try:
        store = open_store(store_url)
        baton = Baton(store)
        spec = baton.spec()
        determinism.configure()
        if rank == 0:
            ensure_dataset(store, spec)  # builds the stdlib dataset once, before the others read it
        if world > 1:
            dist.barrier()
        dataset = open_dataset(store, spec, cache_dir)
        model, optimizer = build(spec, store=store)
        model.to(device)

        # resume: rank 0 picks the checkpoint, every rank loads that same one
        commit, state = baton.resume() if rank == 0 else (None, None)
        if world > 1:
            picked = [commit["gen"] if commit else 0]
            dist.broadcast_object_list(picked, src=0)
            if rank != 0 and picked[0]:
                commit = baton.manifest(picked[0])
                state = baton.load(commit)
        meta = {"step": 0, "tokens": 0, "loss": None, "done": False, "cost_usd": 0.0, "timings": {},
                "metrics": {"train": [], "eval": []}, "spec_digest": spec.digest()}
        if state is not None:
            restore(model, optimizer, state)
            determinism.restore_rng(state["meta"]["rng"])
            meta.update({k: v for k, v in state["meta"].items() if k in meta})
        gen = commit["gen"] if commit else 0
        ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        status = {"status": "ok", "done": meta["done"], "step": meta["step"], "gen": gen, "loss": meta["loss"],
                  "tokens": meta["tokens"], "cost_usd": meta["cost_usd"], "leg_steps": 0, "leg_id": node_id,
                  "store": store.url, "world": world, "device": str(device), "commits": 0, "stopped_by": None,
                  "seconds": {"load": round(time.time() - t_enter, 3), "train": 0.0, "save": 0.0}}
        step0 = step = meta["step"]
        last_ckpt = time.time()
        last_cost_t = t_enter
        step_times: list[float] = []

        def save(done: bool) -> bool:
            """Commit the current state (rank 0); all ranks agree on the outcome."""
            nonlocal gen, last_ckpt, last_cost_t
            t0 = time.time()
            won = True
            if rank == 0:
                now = time.time()
                meta.update(done=done, rng=determinism.capture_rng(),
                            cost_usd=meta["cost_usd"] + cost_per_second * (now - last_cost_t),
                            timings={"step": sum(step_times[-50:]) / max(len(step_times[-50:]), 1)})
                last_cost_t = now
                weights = _to_cpu(dict(model_tensors(model)))
                new = baton.commit(gen, {"weights": weights, "optimizer": _to_cpu(optimizer.state_dict()),
                                         "meta": meta}, leg_id=node_id)
                won = new is not None
                if won:
                    gen = new["gen"]
                    status.update(gen=gen, weights_sha256=new["weights_sha256"])
                    baton.prune(spec.keep_last)
            won = bool(_all_max([0.0 if won else 1.0], world, device)[0] == 0.0)
            status["seconds"]["save"] = round(status["seconds"]["save"] + time.time() - t0, 3)
            status["commits"] += int(won)
            last_ckpt = time.time()
            return won

        t_train = time.time()
        while step < spec.steps and (max_steps is None or step - step0 < max_steps):
            t0 = time.perf_counter()
            b = {k: v.to(device) for k, v in batch(spec, step, rank, world, dataset).items()}
            loss = _all_mean(forward_backward(ddp, spec, b), world, device)
            apply_update(model, optimizer, spec, step)
            step_times.append(time.perf_counter() - t0)
            step += 1
            meta["metrics"]["train"].append([step, loss, lr_at(spec, step - 1)])
            meta.update(step=step, loss=loss, tokens=step * spec.tokens_per_step)
            if on_step is not None and rank == 0:
                on_step(step, loss)
            due, stopping = _all_max([float(time.time() - last_ckpt >= checkpoint_every),
                                      float(stop.signal is not None)], world, device)
            if stopping:
                status["stopped_by"] = signal.Signals(int(stop.signal or signal.SIGTERM)).name
                break
            if due and step < spec.steps and not save(False):
                status["status"] = "lost_race"
                break
        status["seconds"]["train"] = round(time.time() - t_train, 3)

        done = step >= spec.steps
        if status["status"] != "lost_race" and step > step0:
            if done:
                val = evaluate(model, spec, dataset)
                meta["metrics"]["eval"].append([step, val])
                meta["val_loss"] = val
            if not save(done):
                status["status"] = "lost_race"
            elif done and rank == 0:
                store.write(f"{EVAL_PREFIX}{gen:08d}.json",
                            json.dumps({"gen": gen, "step": step, "loss": meta["val_loss"]}).encode())
        if status["status"] != "lost_race":
            status["status"] = "done" if done else "ok"
        status.update(done=done and status["status"] == "done", step=step, loss=meta["loss"], tokens=meta["tokens"],
                      cost_usd=meta["cost_usd"], leg_steps=step - step0)
        if rank == 0 and step > step0 and status["status"] != "lost_race":
            baton.write_leg_status(gen, node_id, status)
        if world > 1:
            dist.barrier()  # leave together: a rank tearing down gloo while another still talks aborts
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if poweroff_when_done and status["done"] and rank == 0:
        _poweroff()
    return status


def _poweroff() -> None:
    cmd = os.environ.get("RELAYTRAIN_POWEROFF_CMD", DEFAULT_POWEROFF_CMD)
    print(f"relaytrain: run done, powering off: {cmd}", file=sys.stderr, flush=True)
    subprocess.run(shlex.split(cmd), check=False)
