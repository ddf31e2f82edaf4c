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
- After each commit rank 0 publishes it live where the deployment asks: TensorBoard event files in
  RELAYTRAIN_TENSORBOARD_DIR (`--tensorboard DIR`), MLflow at RELAYTRAIN_MLFLOW_URI (`--mlflow URI`);
  see relaytrain_runtime.report.live.
"""

from __future__ import annotations

import gc
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

from relaytrain_runtime.engine import Engine, Policy, Worker
from relaytrain_runtime.report.live import LiveLog

DEFAULT_POWEROFF_CMD = "sudo shutdown -h now"


class Interval(Policy):
    """A node's rules: commit every `checkpoint_every` seconds; on SIGTERM/SIGINT finish the step in
    flight, commit and stop. Both decisions are all-reduced every step, so all ranks agree. The lead
    publishes each commit it made to `live` (if given) at the next step and at the end (`published`)."""

    def __init__(self, checkpoint_every: float, max_steps: int | None = None, live: LiveLog | None = None):
        self.checkpoint_every, self.max_steps = checkpoint_every, max_steps
        self.signal: int | None = None
        self.last_commit = time.time()
        self.live = live if live is not None and live.enabled else None
        self.published_gen = 0

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signal = signum

    def begin(self, engine: Engine) -> None:
        engine.status.world, engine.status.device = engine.worker.world, str(engine.worker.device)
        engine.status.commits = 0
        self.last_commit = time.time()
        self.published_gen = engine.gen

    def published(self, engine: Engine) -> None:
        """Publish the engine's newest commit if it is this worker's and not yet published (lead only)."""
        commit = engine.commit_record
        if self.live and engine.worker.lead and commit and commit["gen"] != self.published_gen:
            self.published_gen = commit["gen"]
            self.live.commit(commit)

    def after_step(self, engine: Engine) -> str | None:
        self.published(engine)
        due, stopping = engine.worker.all_max([float(time.time() - self.last_commit >= self.checkpoint_every),
                                               float(self.signal is not None)])
        if stopping:
            engine.status.stopped_by = signal.Signals(int(self.signal or signal.SIGTERM)).name
            return "stop"
        if due:
            self.last_commit = time.time()
            return "commit"
        return None


def run_node(store_url: str, *, checkpoint_every: float = 600.0, max_steps: int | None = None,
             cost_per_second: float = 0.0, cache_dir: str | None = None, poweroff_when_done: bool = False,
             on_step=None, tensorboard_dir: str | None = None, mlflow_uri: str | None = None) -> dict:
    """Train the run in `store_url` until done, stopped (SIGTERM) or `max_steps` more steps. Returns the
    node status (rank 0's is the one that matters): the leg status fields plus `commits` and `stopped_by`.

    cost_per_second: what the whole job (every machine of it) costs per second; accrued into the run.
    tensorboard_dir, mlflow_uri: publish each commit live (default: $RELAYTRAIN_TENSORBOARD_DIR,
    $RELAYTRAIN_MLFLOW_URI; relaytrain_runtime.report.live)."""
    live = LiveLog(store_url, tensorboard_dir=tensorboard_dir, mlflow_uri=mlflow_uri)
    policy = Interval(checkpoint_every, max_steps, live)
    policy.install()
    worker = Worker.from_env()
    try:
        engine = Engine(store_url, worker, leg_id=f"node{uuid.uuid4().hex[:6]}", cost_per_second=cost_per_second,
                        cache_dir=cache_dir, on_step=on_step)
        status = engine.run(policy).to_dict()
        policy.published(engine)  # the final commit
        worker.barrier()  # leave together: a rank tearing down gloo while another still talks aborts
        # Free the model (its DDP Reducer holds the process group) while the group is still registered:
        # dropped later, with the GIL held, the Reducer destroys gloo, whose thread waits for the GIL (a hang).
        del engine
        gc.collect()
    finally:
        live.close()
        worker.close()
    if poweroff_when_done and status["done"] and worker.lead:
        _poweroff()
    return status


def _poweroff() -> None:
    cmd = os.environ.get("RELAYTRAIN_POWEROFF_CMD", DEFAULT_POWEROFF_CMD)
    print(f"relaytrain: run done, powering off: {cmd}", file=sys.stderr, flush=True)
    subprocess.run(shlex.split(cmd), check=False)
