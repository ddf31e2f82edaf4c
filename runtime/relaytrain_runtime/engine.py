"""The training engine: resume -> steps -> evaluate -> commit -> prune -> status, written once.

    engine = Engine(store_url, Worker.local(), leg_id="a1b2c3d4", cost_per_second=..., cache_dir=...)
    status = engine.run(policy)      # policy: when to stop, when to commit (leg.Deadline, node.Interval)

The entry points are policies over it: a Lambda or local leg stops before its deadline and commits
once (`leg.py`); a GPU/VM node commits every few minutes and stops on a signal (`node.py`); a
function-shards round resumes, applies the round's update and commits through `Engine.commit`
(`shards/rounds.py`). The device and the distributed group are the `Worker`'s; every tensor the
engine hands the model is on the model's device.

Per commit, in this order: evaluate (when done, or at the first commit at or after each multiple
of spec.eval_every), the metrics stream object of the commit's steps (`contract.metrics`), the
checkpoint objects and the manifest (`Baton.commit`, manifest last and create-only: the fence),
then the evaluation record and pruning (the best checkpoint, lowest validation loss, is kept).
Killing the worker at any instant loses at most the steps since its last commit.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from relaytrain_runtime import determinism, distributed
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.metrics import write_records
from relaytrain_runtime.contract.records import EvalRecord, TrainingMeta, WorkerStatus, perplexity, write_eval
from relaytrain_runtime.data import Dataset, batch, ensure_dataset, open_dataset, position
from relaytrain_runtime.model import model_tensors
from relaytrain_runtime.precision import Precision, device_gpu, enable_tf32, node_throughput
from relaytrain_runtime.report.logline import COMMIT_LOG_ENV, commit_log_line
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.speed import Prefetcher, compile_model
from relaytrain_runtime.store import Store, open_store
from relaytrain_runtime.throughput import flops_per_token, mfu, peak_flops
from relaytrain_runtime.train import apply_update, build, evaluate, forward_backward, lr_at, restore
from relaytrain_runtime.train import make_optimizer as make_adamw
from relaytrain_runtime.train import make_optimizer as make_run_optimizer

TIMINGS_WINDOW = 50  # steps averaged into the checkpoint's step time (the next leg's first estimate)

# build_model seeds torch's global RNG, so two engines building models at once in one process (a
# Cloud Functions instance serving concurrent requests, threads in tests) would interleave draws
BUILD_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------- worker


@dataclass
class Worker:
    """Where the engine computes: this process's rank of `world` and its device. Collectives are
    no-ops for a single process."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls) -> Worker:
        """(rank, world, device) from torchrun's environment; a single process otherwise. Joins the
        process group (NCCL on GPUs, gloo on CPU) when world > 1."""
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
            return cls(dist.get_rank(), world, device)
        return cls(0, 1, device)

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def put(self, tensors: dict) -> dict:
        """A batch on this worker's device."""
        return {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()}

    def share(self, obj):
        """The lead's `obj` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_max(self, values: list[float]) -> list[float]:
        """Element-wise max over ranks (every rank gets the same answer)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def all_mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world

    def agree(self, ok: bool) -> bool:
        """True on every rank iff `ok` on every rank."""
        return self.all_max([0.0 if ok else 1.0])[0] == 0.0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def to_cpu(obj):
    """A state (tensors in dicts and lists) copied to host memory, for a checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


def optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move an optimizer's state tensors next to its parameters (after `model.to(device)`)."""
    for slots in optimizer.state.values():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor) and name != "step":
                slots[name] = value.to(device)


# ----------------------------------------------------------------------------------------- policy


class Policy:
    """When a run of the engine stops and when it commits. The engine asks, in this order:

    begin(engine)                   once, after resuming, before the first step
    stop_before(engine) -> bool     before each step: stop now (e.g. the next step would miss a deadline)
    after_step(engine) -> str|None  after each step: "stop", "commit" (commit, then go on) or None
    cost_reserve_s(engine) -> float seconds of work after this commit that this worker will not commit
                                    again (a leg's save) and so bills now
    """

    max_steps: int | None = None

    def begin(self, engine: Engine) -> None:
        pass

    def stop_before(self, engine: Engine) -> bool:
        return False

    def after_step(self, engine: Engine) -> str | None:
        return None

    def cost_reserve_s(self, engine: Engine) -> float:
        return 0.0


# ----------------------------------------------------------------------------------------- engine


class Engine:
    """One worker's pass over a run: see the module docstring. `status` is the WorkerStatus it returns."""

    def __init__(self, store_url: str | Store, worker: Worker | None = None, *, leg_id: str,
                 cost_per_second: float = 0.0, cache_dir: str | None = None, spec: RunSpec | dict | None = None,
                 threads: int | None = None, start_s: float = 0.0,
                 on_step: Callable[[int, float], None] | None = None, baton: Baton | None = None):
        self.t_enter = time.time()
        self.worker = worker or Worker()
        self.leg_id = self.worker.share(leg_id)  # one id for the ranks' one commit (each writes its own shards)
        self.cost_per_second = cost_per_second
        self.on_step = on_step
        self.store = store_url if isinstance(store_url, Store) else open_store(store_url)
        self.baton = baton or Baton(self.store)
        if spec is not None:
            self.baton.init(RunSpec.from_dict(spec) if isinstance(spec, dict) else spec)
        self.spec = self.baton.spec()
        self.threads = determinism.configure(threads, deterministic=self.spec.deterministic)
        self.amp = Precision.for_run(self.spec, self.worker.device)  # autocast and the fp16 gradient scaler
        enable_tf32(self.worker.device)
        # each train record's MFU: the run's FLOPs per token (LoRA's differ) over the device's peak (None: unknown)
        self.flops_per_token = flops_per_token(self.spec.model, self.spec.sequence_length, self.spec)
        self.peak_flops = peak_flops(device_gpu(self.worker.device), self.amp.name)
        self.cache_dir = cache_dir
        self._dataset: Dataset | None = None
        self.records: list[dict] = []  # metrics of the steps since the last commit (written with it)
        self.step_times: list[float] = []
        self._cost_since = self.t_enter - start_s  # the worker's seconds not yet billed into the run
        self.commit_record: dict | None = None
        self.gen = 0

    # --------------------------------------------------------------------------------------- data

    def prepare_data(self) -> None:
        """Build the run's dataset if it is the stdlib one and absent (the lead, once, before the
        other ranks read it), then open it. Every rank calls this at the same point."""
        if self.worker.lead:
            ensure_dataset(self.store, self.spec)
        self.worker.barrier()
        self._dataset = open_dataset(self.store, self.spec, self.cache_dir)

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:  # a round's committer opens the dataset only when it evaluates
            self._dataset = open_dataset(self.store, self.spec, self.cache_dir)
        return self._dataset

    # ------------------------------------------------------------------------------------- resume

    def resume(self, make_optimizer: Callable | None = None) -> None:
        """Model and optimizer on the worker's device from the newest loadable commit (rank 0 picks it,
        every rank loads that one), or from the seed. `make_optimizer(model)` replaces AdamW (DiLoCo's
        outer SGD)."""
        commit, state = self.baton.resume() if self.worker.lead else (None, None)
        if self.worker.world > 1:
            picked = [commit["gen"] if commit else 0]
            dist.broadcast_object_list(picked, src=0)
            if not self.worker.lead and picked[0]:
                commit = self.baton.manifest(picked[0])
                state = self.baton.load(commit)
        with BUILD_LOCK:
            if make_optimizer is None and (self.spec.parallelism == "fsdp" or (state and "sharded" in state)):
                self.model, self.optimizer = self._build_distributed(state)
            elif make_optimizer is None:
                self.model, self.optimizer = build(self.spec, state, store=self.store)
            else:
                self.model, _ = build(self.spec, store=self.store)
                self.optimizer = make_optimizer(self.model)
                if state is not None:
                    restore(self.model, self.optimizer, state)
        self.model.to(self.worker.device)
        if make_optimizer is None and self.worker.device.type == "cuda" and not distributed.is_sharded(self.model):
            # AdamW picks its kernel by its parameters' device (train.adamw_kernel): made again now that they are
            # on the GPU, it is the fused one; its state (restored on the host) follows the parameters
            on_device = make_run_optimizer(self.model, self.spec)
            on_device.load_state_dict(self.optimizer.state_dict())
            self.optimizer = on_device
        optimizer_to(self.optimizer, self.worker.device)
        self.meta = TrainingMeta(spec_digest=self.spec.digest())
        if state is not None:
            determinism.restore_rng(state["meta"]["rng"])
            self.meta = TrainingMeta.from_dict(state["meta"], f"checkpoint gen {commit['gen']} state")
            self.amp.load_state_dict(self.meta.scaler)
        self.commit_record, self.gen = commit, commit["gen"] if commit else 0
        self.step0 = self.meta.step
        self.trainer = self.model if distributed.is_sharded(self.model) else (
            torch.nn.parallel.DistributedDataParallel(self.model) if self.worker.world > 1 else self.model)
        if self.spec.compile:  # self.model stays the uncompiled module: state dicts and evaluation use it
            self.trainer = compile_model(self.trainer, self.cache_dir)
        self.status = WorkerStatus(
            status="ok", done=self.meta.done, step=self.meta.step, gen=self.gen, loss=self.meta.loss,
            tokens=self.meta.tokens, cost_usd=self.meta.cost_usd, leg_steps=0, leg_id=self.leg_id,
            store=self.store.url, warnings=self.baton.warnings,
            seconds={"load": round(time.time() - self.t_enter, 3), "train": 0.0, "save": 0.0})

    def _build_distributed(self, state: dict | None) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """`parallelism: fsdp` (or a sharded checkpoint): the model on the device, wrapped in FSDP2 when there is a
        process group, its optimizer over the wrapped parameters, then any checkpoint loaded into it (a DCP one
        resharded onto this world size, a plain one through full state dicts)."""
        device = self.worker.device
        model, _ = build(self.spec, store=self.store)
        model = model.to(device)
        if self.spec.parallelism == "fsdp":  # DDP wraps below, after the optimizer, as for a plain checkpoint
            model = distributed.wrap_model(model, "fsdp", device, self.worker.world)
        optimizer = make_adamw(model, self.spec)
        if state is not None:
            distributed.load_state(model, optimizer, self.spec, self.baton, state, self.staging)
        return model, optimizer

    @property
    def staging(self) -> pathlib.Path:
        """A local folder for a sharded checkpoint's files on their way to or from the store."""
        return pathlib.Path(self.cache_dir or tempfile.gettempdir()) / "staging"

    @property
    def run_name(self) -> str:
        """The run's name: the last segment of its store URL (.../runs/NAME, as every stack lays runs out)."""
        return self.store.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def finished(self) -> bool:
        """Trained to the spec's steps (a finished run whose steps were raised since trains on)."""
        return self.meta.step >= self.spec.steps

    # -------------------------------------------------------------------------------------- steps

    def batch(self, step: int, rank: int | None = None, world: int | None = None) -> dict:
        """Slice `rank` of `world` (default: this worker's) of step `step`'s global batch, on the device."""
        rank = self.worker.rank if rank is None else rank
        world = self.worker.world if world is None else world
        return self.worker.put(batch(self.spec, step, rank, world, self.dataset))

    def gradient(self, step: int, rank: int, world: int) -> float:
        """Accumulate the gradient of slice `rank` of `world` of step `step` (a function shard's share)."""
        return forward_backward(self.trainer, self.spec, self.batch(step, rank, world), amp=self.amp)

    def local_step(self, optimizer: torch.optim.Optimizer, step: int, rank: int, world: int) -> float:
        """One optimizer step of `optimizer` on slice `rank` of `world` of step `step` (DiLoCo's inner
        steps): the run's meta does not move."""
        loss = self.gradient(step, rank, world)
        apply_update(self.model, optimizer, self.spec, step, amp=self.amp)
        return loss

    def batches(self) -> Prefetcher | None:
        """On a GPU, this rank's batches from `meta.step` on, each built and copied while the step before it
        runs (`speed.Prefetcher`); None elsewhere (`step` builds its batch itself, as a leg always has)."""
        if self.worker.device.type != "cuda":
            return None
        rank, world = self.worker.rank, self.worker.world
        return Prefetcher(lambda step: batch(self.spec, step, rank, world, self.dataset), self.worker.device,
                          start=self.meta.step, stop=self.spec.steps)

    def step(self, batches: Prefetcher | None = None) -> float:
        """One optimizer step on this rank's slice of the global batch of step `meta.step` (from `batches`
        when given)."""
        spec, step = self.spec, self.meta.step
        t0 = time.perf_counter()
        if batches is None:
            b = self.batch(step)
        else:
            prepared, b = next(batches)
            assert prepared == step, (prepared, step)
        t_data = time.perf_counter()
        loss = forward_backward(self.trainer, spec, b, amp=self.amp)
        grad_norm = apply_update(self.model, self.optimizer, spec, step, amp=self.amp)
        t_compute = time.perf_counter()
        loss = self.worker.all_mean(loss)
        t_end = time.perf_counter()
        step_s = t_end - t0
        self.step_times.append(step_s)
        self.meta.step, self.meta.loss, self.meta.tokens = step + 1, loss, (step + 1) * spec.tokens_per_step
        record = {"kind": "train", "step": step + 1, "loss": loss, "lr": lr_at(spec, step), "grad_norm": grad_norm,
                  "tokens": self.meta.tokens, "tokens_per_s": spec.tokens_per_step / step_s if step_s else None,
                  "step_s": step_s, "data_s": t_data - t0, "compute_s": t_compute - t_data}
        if step_s and self.peak_flops:  # where the device's peak is known
            rate = spec.tokens_per_step / step_s
            record["mfu"] = mfu(rate, self.flops_per_token, self.peak_flops, self.worker.world)  # unrounded
        if self.worker.world > 1:
            record["comm_s"] = t_end - t_compute  # the loss all-reduce; DDP's gradient all-reduce overlaps backward
        self.records.append(record)
        if self.on_step is not None and self.worker.lead:
            self.on_step(step + 1, loss)
        return loss

    def step_estimate(self) -> float:
        """Seconds the next step will take: the slowest of the last few, or the checkpoint's mean."""
        return max(self.step_times[-8:]) if self.step_times else float(self.meta.timings.get("step") or 0.0)

    # ---------------------------------------------------------------------------------- evaluate

    def eval_due(self, step: int | None = None) -> bool:
        """Whether a commit at `step` (default: now) evaluates: when the run is done there, and at the
        first commit at or after each multiple of spec.eval_every."""
        step = self.meta.step if step is None else step
        every = self.spec.eval_every
        return step >= self.spec.steps or (every > 0 and step // every > self.meta.eval_step // every)

    def eval_estimate(self) -> float:
        """Seconds an evaluation takes, from the step time (eval batches are micro batches, forward only)."""
        return self.step_estimate() * self.spec.eval_batches * self.spec.micro_batch / self.spec.batch_size

    def evaluate(self) -> float:
        """Validation loss of the current weights on the run's fixed held-out batches; recorded in the
        meta (this commit's val_loss) and the stream."""
        val = evaluate(self.model, self.spec, self.dataset, amp=self.amp)
        self.meta.val_loss, self.meta.perplexity, self.meta.eval_step = val, perplexity(val), self.meta.step
        self.records.append({"kind": "eval", "step": self.meta.step, "val_loss": val,
                             "perplexity": self.meta.perplexity})
        return val

    # ------------------------------------------------------------------------------------ commit

    def commit(self, *, cost_reserve_s: float = 0.0, extra_cost_usd: float = 0.0) -> bool:
        """Commit the current state (the lead rank writes; every rank learns the outcome). False when
        another worker committed this gen first (the race is lost; nothing of ours remains). An FSDP
        model commits on every rank: each evaluates (a collective forward) and writes its own shards."""
        t0 = time.time()
        if distributed.is_sharded(self.model):
            won = self._commit_sharded(cost_reserve_s, extra_cost_usd)
        else:
            won = self._commit_lead(cost_reserve_s, extra_cost_usd) if self.worker.lead else True
            won = self.worker.agree(won)
        self.status.seconds["save"] = round(self.status.seconds["save"] + time.time() - t0, 3)
        return won

    def _commit_lead(self, cost_reserve_s: float, extra_cost_usd: float) -> bool:
        evaluated, gen = self._close_meta(cost_reserve_s, extra_cost_usd)
        stream_key = write_records(self.store, gen, self.leg_id, self.records)  # before the manifest
        state = {"weights": to_cpu(dict(model_tensors(self.model))), "optimizer": to_cpu(self.optimizer.state_dict()),
                 "meta": self.meta.to_dict()}
        new = self.baton.commit(self.gen, state, leg_id=self.leg_id, gen=gen)
        if new is None:
            self.store.delete(stream_key)  # a lost race leaves nothing of ours, like its checkpoint objects
            return False
        self._committed(new, evaluated)
        return True

    def _commit_sharded(self, cost_reserve_s: float, extra_cost_usd: float) -> bool:
        evaluated, gen = self._close_meta(cost_reserve_s, extra_cost_usd)
        stream_key = write_records(self.store, gen, self.leg_id, self.records) if self.worker.lead else None
        new = distributed.save_sharded(self.baton, self.gen, self.model, self.optimizer, self.meta.to_dict(),
                                       self.leg_id, self.staging)  # manifest last, create-only, by rank 0
        if new is None:
            if stream_key:
                self.store.delete(stream_key)
            return False
        if self.worker.lead:
            self._committed(new, evaluated)
        else:
            self.records, self.gen, self.commit_record = [], new["gen"], new
        return True

    def _close_meta(self, cost_reserve_s: float, extra_cost_usd: float) -> tuple[bool, int | None]:
        """Evaluate if due and complete the meta of the commit about to be written. Returns (evaluated, the gen
        the commit takes: the lead's; None on other ranks, which do not write the meta)."""
        meta, spec = self.meta, self.spec
        evaluated = self.eval_due()
        if evaluated:
            self.evaluate()
        else:
            meta.val_loss = meta.perplexity = None
        now = time.time()
        meta.done = meta.step >= spec.steps
        meta.data = position(spec, meta.step, self.dataset)
        meta.cost_usd += extra_cost_usd + self.cost_per_second * (now - self._cost_since + cost_reserve_s)
        self._cost_since = now + cost_reserve_s
        window = self.step_times[-TIMINGS_WINDOW:]
        if window:
            meta.timings = {"step": sum(window) / len(window)}
        gen = self.baton.next_gen
        if evaluated and (meta.best_val_loss is None or meta.val_loss < meta.best_val_loss):
            meta.best_gen, meta.best_val_loss = gen, meta.val_loss
        meta.rng, meta.scaler = determinism.capture_rng(), self.amp.state_dict()
        return evaluated, gen

    def _committed(self, new: dict, evaluated: bool) -> None:
        """The lead, after its commit won: log it, record its evaluation, prune."""
        meta, spec = self.meta, self.spec
        if os.environ.get(COMMIT_LOG_ENV) == "1":  # GCP workers: Cloud Logging turns it into run metrics
            line = commit_log_line(new, self.records, run=self.run_name, worker=self.leg_id)
            print(line, file=sys.stderr, flush=True)
        self.records = []
        self.gen, self.commit_record = new["gen"], new
        self.status.gen, self.status.weights_sha256 = new["gen"], new["weights_sha256"]
        if evaluated:
            write_eval(self.store, EvalRecord(gen=new["gen"], step=meta.step, loss=meta.val_loss,
                                              perplexity=meta.perplexity, batches=spec.eval_batches,
                                              weights_sha256=new["weights_sha256"]))
            self.status.val_loss, self.status.perplexity = meta.val_loss, meta.perplexity
        self.baton.prune(spec.keep_last, protect={meta.best_gen} if meta.best_gen else set())

    # --------------------------------------------------------------------------------------- run

    def train(self, policy: Policy, batches: Prefetcher | None) -> int:
        """Steps until done or the policy stops, committing on its say. Returns the commits made."""
        commits = 0
        while not self.finished and (policy.max_steps is None or self.meta.step - self.step0 < policy.max_steps):
            if policy.stop_before(self):
                break
            self.step(batches)
            action = policy.after_step(self)
            if action == "stop":
                break
            if action == "commit" and not self.finished:
                if not self.commit():
                    self.status.status = "lost_race"
                    break
                commits += 1
        return commits

    def run(self, policy: Policy) -> WorkerStatus:
        """Resume, train until the policy stops, commit on its say and at the end, return the status
        (written to legs/<gen>-<leg>.json when this worker committed)."""
        self.prepare_data()
        self.resume()
        policy.begin(self)
        if self.finished:
            self.status.status, self.status.done = "done", True
            self.status.data = position(self.spec, self.meta.step, self.dataset)
            return self.status
        if self.worker.lead:  # a store that cannot take this worker's checkpoint fails now, not after training
            self.baton.check_writable(self.spec.model.param_count() * 4 * 3)
        t_train = time.time()
        batches = self.batches()
        try:
            commits = self.train(policy, batches)
        finally:
            if batches is not None:
                batches.close()
        self.status.seconds["train"] = round(time.time() - t_train, 3)
        if self.status.status != "lost_race" and self.meta.step > self.step0:
            if self.commit(cost_reserve_s=policy.cost_reserve_s(self)):
                commits += 1
            else:
                self.status.status = "lost_race"
        done = self.meta.step >= self.spec.steps
        if self.status.status != "lost_race":
            self.status.status = "done" if done else "ok"
        self.status.done = done and self.status.status == "done"
        self.status.step, self.status.loss, self.status.tokens = self.meta.step, self.meta.loss, self.meta.tokens
        self.status.cost_usd, self.status.leg_steps = self.meta.cost_usd, self.meta.step - self.step0
        self.status.data = position(self.spec, self.meta.step, self.dataset)
        if self.status.leg_steps:
            self.status.throughput = node_throughput(self.spec, self.status.leg_steps, self.status.seconds["train"],
                                                     self.worker.world, self.worker.device, self.amp.name)
        if self.status.commits is not None:
            self.status.commits = commits
        if self.worker.lead and commits and self.status.status != "lost_race":
            self.baton.write_leg_status(self.gen, self.leg_id, self.status.to_dict())
        return self.status
