"""The local relay behind `train`: legs in fresh processes (real cold starts) until the run is done.

Each leg is `python -m relaytrain_runtime leg --store URL ...`, exactly what a Lambda, a Cloud
Function or a node runs; the relay only watches. A leg that dies (killed, crashed) is retried from
the store; a leg that fails with a clear error stops the relay with that error.
After each leg its commit is published where RELAYTRAIN_TENSORBOARD_DIR / RELAYTRAIN_MLFLOW_URI say
(relaytrain_runtime.report.live; `relaytrain run` sets the blueprint's tracking.mlflow), as a node does.
At the end: a per-leg table (training vs overhead seconds) and a loss-curve PNG in the store.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.keys import LOSS_PNG_KEY as LOSS_PNG
from relaytrain_runtime.contract.keys import SUMMARY_KEY as SUMMARY
from relaytrain_runtime.contract.metrics import read_stream
from relaytrain_runtime.data import dataset_store, ensure_dataset, read_manifest
from relaytrain_runtime.report.live import LiveLog
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store


class Progress:
    """A progress bar over steps and legs on a TTY; plain lines (about every 10 %) otherwise."""

    def __init__(self, total: int, stream=sys.stderr, tty: bool | None = None):
        self.total, self.stream = total, stream
        self.tty = stream.isatty() if tty is None else tty
        self.last_plain = -1

    def update(self, step: int, leg: int, loss: float | None) -> None:
        frac = min(step / self.total, 1.0)
        loss_s = f"{loss:.4f}" if loss is not None else "-"
        if self.tty:
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r[{bar:<30}] step {step}/{self.total}  leg {leg}  loss {loss_s} ")
            self.stream.flush()
        else:
            decile = int(frac * 10)
            if decile != self.last_plain:
                self.last_plain = decile
                print(f"step {step}/{self.total} ({frac:.0%})  leg {leg}  loss {loss_s}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _leg_command(url: str, leg_seconds: float | None, leg_steps: int | None, cost_per_second: float) -> list[str]:
    cmd = [sys.executable, "-m", "relaytrain_runtime", "leg", "--store", url, "--progress"]
    if leg_seconds is not None:
        cmd += ["--max-seconds", str(leg_seconds)]
    if leg_steps is not None:
        cmd += ["--max-steps", str(leg_steps)]
    if cost_per_second:
        cmd += ["--cost-per-second", str(cost_per_second)]
    return cmd


def run_one_leg(cmd: list[str], on_progress, err=sys.stderr) -> tuple[int, dict | None, str]:
    """Run a leg process; stream its progress; return (exit code, status or None, its last error line)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last_error = ""
    for line in proc.stderr:
        if line.startswith("@progress "):
            try:
                on_progress(json.loads(line[len("@progress "):]))
            except ValueError:
                pass
            continue
        if ": error: " in line:
            last_error = line.split(": error: ", 1)[1].strip()
        err.write(line)
    out = proc.stdout.read()
    rc = proc.wait()
    status = None
    for line in reversed(out.strip().splitlines()):
        try:
            status = json.loads(line)
            break
        except ValueError:
            continue
    return rc, status, last_error


def relay(store_url: str, spec: RunSpec | None = None, *, leg_seconds: float | None = None,
          leg_steps: int | None = None, cost_per_second: float = 0.0, max_retries: int = 3,
          stream=sys.stderr, tty: bool | None = None) -> dict:
    if leg_seconds is not None and not (math.isfinite(leg_seconds) and leg_seconds > 0):
        raise RelayError(f"--leg-seconds must be > 0 seconds (finite), got {leg_seconds}")
    if not (math.isfinite(cost_per_second) and cost_per_second >= 0):
        raise RelayError(f"--cost-per-second must be a finite number >= 0, got {cost_per_second}")
    if leg_steps is not None and leg_steps < 1:
        raise RelayError(f"--leg-steps must be >= 1, got {leg_steps}")
    store = open_store(store_url)
    baton = Baton(store)
    if spec is not None:
        baton.init(spec)
    run_spec = baton.spec()
    t_start = time.time()
    ensure_dataset(store, run_spec)
    prep_s = time.time() - t_start

    progress = Progress(run_spec.steps, stream, tty)
    live, published = LiveLog(store), None  # each leg's commit into TensorBoard/MLflow as it lands, if configured
    legs: list[dict] = []
    failures = 0
    cmd = _leg_command(store.url, leg_seconds, leg_steps, cost_per_second)
    while True:
        leg_no = len(legs) + 1
        t0 = time.time()
        rc, status, error = run_one_leg(cmd, lambda p, n=leg_no: progress.update(p["step"], n, p["loss"]), stream)
        wall = time.time() - t0
        if rc != 0 or status is None:
            if error:  # a clear error from the leg: retrying cannot help
                progress.close()
                raise RelayError(error)
            failures += 1
            if failures > max_retries:
                progress.close()
                raise RelayError(f"leg {leg_no} failed {failures} times in a row (exit code {rc}); "
                                 "see its output above; the run is intact in the store: resume with the same command")
            print(f"relaytrain: leg {leg_no} died (exit code {rc}); resuming from the store", file=stream, flush=True)
            continue
        if status["status"] == "done" and status["leg_steps"] == 0:
            break  # the run was already complete
        if status["leg_steps"] == 0 and status["status"] == "ok":  # the time box closed before one step fit
            failures += 1
            if failures > max_retries:
                progress.close()
                raise RelayError(f"{failures} legs of {leg_seconds} s in a row could not fit one step plus a save "
                                 f"(start {status['seconds']['start']:.1f} s, load {status['seconds']['load']:.1f} s, "
                                 f"save estimate {status.get('save_estimate_s', 0):.1f} s); use a larger --leg-seconds")
            continue
        failures = 0
        status["wall_s"] = round(wall, 3)
        legs.append(status)
        progress.update(status["step"], leg_no, status["loss"])
        commit = baton.latest() if live.enabled else None
        if commit and commit["gen"] != published:
            published = commit["gen"]
            live.commit(commit)
        if status["done"]:
            break
    progress.close()
    live.close()
    return finish(baton, run_spec, legs, time.time() - t_start, prep_s, stream)


def finish(baton: Baton, spec: RunSpec, legs: list[dict], total_s: float, prep_s: float, stream) -> dict:
    """Print the per-leg table and the result; write the loss curve and a summary into the store."""
    commit = baton.latest(verify=True)
    state = baton.read_state(commit) if commit else {}
    baseline = read_manifest(dataset_store(baton.store, spec)).get("unigram_entropy_nats")
    summary = {"store": baton.store.url, "preset": spec.preset, "steps": spec.steps,
               "step": commit["step"] if commit else 0, "done": bool(commit and commit["done"]),
               "train_loss": commit["loss"] if commit else None, "val_loss": state.get("val_loss"),
               "unigram_entropy_nats": baseline, "ln_vocab": math.log(spec.model.vocab_size),
               "weights_sha256": commit["weights_sha256"] if commit else None, "legs": len(legs),
               "seconds": {"total": round(total_s, 2), "dataset": round(prep_s, 2),
                           "train": round(sum(s["seconds"]["train"] for s in legs), 2),
                           "overhead": round(sum(s["wall_s"] - s["seconds"]["train"] for s in legs), 2)},
               "cost_usd": commit["cost_usd"] if commit else 0.0}
    if legs:
        print(leg_table(legs), file=stream)
    png = write_loss_png(baton, read_stream(baton.store), baseline)
    if png:
        summary["loss_png"] = f"{baton.store.url}/{png}"
    baton.store.write(SUMMARY, (json.dumps(summary, indent=1) + "\n").encode())
    line = f"done: {spec.preset} {summary['step']}/{spec.steps} steps in {len(legs)} leg(s), {total_s:.1f} s"
    if summary["val_loss"] is not None:
        line += f"; val loss {summary['val_loss']:.3f} nats"
        if baseline:
            line += f" (unigram entropy {baseline:.3f}, uniform ln V {summary['ln_vocab']:.3f})"
    print(line, file=stream)
    if png:
        print(f"loss curve: {summary['loss_png']}", file=stream)
    return summary


def leg_table(legs: list[dict]) -> str:
    rows = [("leg", "steps", "step", "loss", "start s", "load s", "train s", "save s", "wall s", "overhead")]
    for i, s in enumerate(legs, 1):
        sec = s["seconds"]
        overhead = s["wall_s"] - sec["train"]
        rows.append((str(i), str(s["leg_steps"]), str(s["step"]), f"{s['loss']:.4f}" if s["loss"] is not None else "-",
                     f"{sec['start']:.2f}", f"{sec['load']:.2f}", f"{sec['train']:.2f}", f"{sec['save']:.2f}",
                     f"{s['wall_s']:.2f}", f"{overhead / s['wall_s']:.0%}" if s["wall_s"] else "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def write_loss_png(baton: Baton, records: list[dict], baseline: float | None) -> str | None:
    """Training (and validation) loss of the metrics stream against steps, written to report/loss.png;
    None without matplotlib."""
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    evals = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "eval"]
    if not train:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("relaytrain: note: matplotlib is not installed; no loss curve (pip install 'relaytrain-runtime[plot]')",
              file=sys.stderr)
        return None
    import io

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o", label="validation loss")
    if baseline:
        ax.axhline(baseline, linestyle="--", color="gray", label="unigram entropy")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    baton.store.write(LOSS_PNG, buf.getvalue())
    return LOSS_PNG
