"""The metrics stream as TensorBoard scalars, written with tensorboard's own numpy-only writer.

One event file, `DIR/events.out.tfevents.relaytrain`, replaced atomically on every call: running
`relaytrain report --tensorboard DIR` again while a run goes on refreshes the curves, and point
`tensorboard --logdir DIR` at it. Tags:

    train/loss train/lr train/grad_norm train/tokens_per_s train/mfu
    time/step_s time/data_s time/compute_s time/comm_s
    val/loss val/perplexity
    cost/usd                                   (per commit, from the commit manifests and leg statuses)

Wall times are those of the commit that carried the record (when its manifest is retained; the
oldest retained commit's otherwise), so TensorBoard's relative and wall views show the run's clock.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time

from relaytrain_runtime.report.view import RunView

EVENT_FILE = "events.out.tfevents.relaytrain"  # TensorBoard reads any file whose name holds "tfevents"
TRAIN_TAGS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
              "tokens_per_s": "train/tokens_per_s", "mfu": "train/mfu", "step_s": "time/step_s",
              "data_s": "time/data_s", "compute_s": "time/compute_s", "comm_s": "time/comm_s"}
EVAL_TAGS = {"val_loss": "val/loss", "perplexity": "val/perplexity"}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def cost_points(run: RunView) -> list[tuple[int, float, int]]:
    """(step, cost_usd, gen) per commit: leg statuses (never pruned) and retained manifests, by step."""
    points = {}
    for source in (run.legs, run.commits.values()):
        for rec in source:
            if _number(rec.get("step")) and _number(rec.get("cost_usd")) and _number(rec.get("gen")):
                points[int(rec["step"])] = (int(rec["step"]), float(rec["cost_usd"]), int(rec["gen"]))
    return [points[s] for s in sorted(points)]


def _clock(run: RunView):
    known = sorted((g, c["created"]) for g, c in run.commits.items() if _number(c.get("created")))
    fallback = known[0][1] if known else time.time()

    def wall_time(gen) -> float:
        return next((t for g, t in known if _number(gen) and g >= gen), fallback)

    return wall_time


def record_scalars(rec: dict, wall: float) -> list[tuple[str, float, int, float]]:
    """(tag, value, step, wall) of one stream record (train or eval); fields a worker did not measure are skipped."""
    tags = EVAL_TAGS if rec.get("kind", "eval") == "eval" else TRAIN_TAGS
    return [(tag, float(rec[k]), rec["step"], wall) for k, tag in tags.items() if _number(rec.get(k))]


def scalars(run: RunView) -> list[tuple[str, float, int, float]]:
    """(tag, value, step, wall_time) of every point written."""
    wall_time = _clock(run)
    out = []
    for rec in run.train + run.evals:
        out += record_scalars(rec, wall_time(rec.get("gen")))
    out += [("cost/usd", cost, step, wall_time(gen)) for step, cost, gen in cost_points(run)]
    return out


def write_events(run: RunView, logdir: str | os.PathLike) -> pathlib.Path:
    """Write the run's scalars as `logdir/events.out.tfevents.relaytrain` (replacing a previous one)."""
    from tensorboard.summary import Writer

    logdir = pathlib.Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".relaytrain-", dir=logdir))
    try:
        writer = Writer(str(staging))
        for tag, value, step, wall in scalars(run):
            writer.add_scalar(tag, value, step, wall_time=wall)
        writer.close()
        (written,) = staging.iterdir()
        target = logdir / EVENT_FILE
        os.replace(written, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
