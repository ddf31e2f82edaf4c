"""A run's report folder: loss, throughput and cost plots (PNG, matplotlib) and a summary table.

    loss.png        training loss per step and validation loss per evaluation
    throughput.png  tokens per second per step, and the step time split (data, compute, communication)
    cost.png        accrued cost per commit against steps, its linear projection to the end and the budget
    summary.md      the summary table (also printed by `relaytrain report`)
    summary.json    the same numbers for scripts
"""

from __future__ import annotations

import json
import pathlib
import statistics

from relaytrain_runtime import RelayError
from relaytrain_runtime.report.status import duration
from relaytrain_runtime.report.tensorboard import cost_points
from relaytrain_runtime.report.view import RunView

SPLIT = ("data_s", "compute_s", "comm_s")


def _values(records: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], float(r[key])) for r in records
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def summary(run: RunView, status: dict) -> dict:
    """The numbers of the summary table."""
    rates = [v for _, v in _values(run.train, "tokens_per_s")]
    step_s = [v for _, v in _values(run.train, "step_s")]
    split = {k: sum(v for _, v in _values(run.train, k)) for k in SPLIT}
    total = sum(split.values())
    best = min((e for e in run.evals if isinstance(e.get("val_loss"), (int, float))),
               key=lambda e: e["val_loss"], default=None)
    return {
        "store": run.store_url, "preset": run.spec.preset, "step": status["step"], "steps": run.spec.steps,
        "tokens": status["tokens"], "epoch": status["epoch"], "loss": status["loss"],
        "val_loss": status["val_loss"], "best_val_loss": best["val_loss"] if best else None,
        "best_val_step": best["step"] if best else None, "evaluations": len(run.evals),
        "median_tokens_per_s": statistics.median(rates) if rates else None,
        "median_step_s": statistics.median(step_s) if step_s else None,
        "time_split": {k: round(v / total, 4) for k, v in split.items()} if total else None,
        "wall_tokens_per_s": status["tokens_per_s"], "eta_s": status["eta_s"],
        "cost_usd": status["cost_usd"], "projected_cost_usd": status["projected_cost_usd"],
        "budget_usd": status["budget_usd"], "legs": status["legs"], "checkpoints": status["checkpoints"],
        "stream_records": len(run.train),
    }


def _fmt(x, spec: str = "") -> str:
    return "-" if x is None else format(x, spec)


def format_table(s: dict) -> str:
    split = s["time_split"]
    rows = [
        ("run", f"{s['store']} ({s['preset']})"),
        ("step", f"{s['step']:,} / {s['steps']:,}"),
        ("tokens", f"{s['tokens']:,}" + ("" if s["epoch"] is None else f" (epoch {s['epoch']:.3f})")),
        ("loss (latest)", _fmt(s["loss"], ".4f")),
        ("val loss (latest)", _fmt(s["val_loss"], ".4f")),
        ("val loss (best)", "-" if s["best_val_loss"] is None
         else f"{s['best_val_loss']:.4f} at step {s['best_val_step']}"),
        ("evaluations", str(s["evaluations"])),
        ("tokens/s (median step)", _fmt(s["median_tokens_per_s"], ",.1f")),
        ("tokens/s (wall clock)", _fmt(s["wall_tokens_per_s"], ",.1f")),
        ("step time (median)", "-" if s["median_step_s"] is None else f"{s['median_step_s']:.4f} s"),
        ("time split data/compute/comm", "-" if split is None else
         " / ".join(f"{100 * split[k]:.1f} %" for k in SPLIT)),
        ("ETA", duration(s["eta_s"])),
        ("cost so far", f"${s['cost_usd']:,.4f}"),
        ("projected cost", "-" if s["projected_cost_usd"] is None else f"${s['projected_cost_usd']:,.4f}"),
        ("budget", "-" if s["budget_usd"] is None else f"${s['budget_usd']:,.2f}"),
        ("legs / checkpoints retained", f"{s['legs']} / {s['checkpoints']}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"| {'metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
                     + [f"| {k:<{width}} | {v} |" for k, v in rows])


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise RelayError("relaytrain report --out needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _loss(plt, run: RunView, path: pathlib.Path) -> pathlib.Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    train = _values(run.train, "loss")
    if train:
        ax.plot(*zip(*train, strict=True), lw=1, label="train loss")
    val = _values(run.evals, "val_loss")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set(xlabel="step", ylabel="loss", title=f"{run.spec.preset}: loss")
    if train or val:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no metrics stream yet", ha="center", transform=ax.transAxes)
    return _save(plt, fig, path)


def _throughput(plt, run: RunView, path: pathlib.Path) -> pathlib.Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    rates = _values(run.train, "tokens_per_s")
    if rates:
        top.plot(*zip(*rates, strict=True), lw=1)
    top.set(ylabel="tokens/s", title=f"{run.spec.preset}: throughput")
    for key in SPLIT:
        points = _values(run.train, key)
        if points:
            bottom.plot(*zip(*points, strict=True), lw=1, label=key[:-2])
    if bottom.get_lines():
        bottom.legend()
    bottom.set(xlabel="step", ylabel="seconds per step")
    return _save(plt, fig, path)


def _cost(plt, run: RunView, status: dict, path: pathlib.Path) -> pathlib.Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    points = cost_points(run)
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label="accrued")
    if status["projected_cost_usd"] is not None and not status["done"]:
        ax.plot([status["step"], run.spec.steps], [status["cost_usd"], status["projected_cost_usd"]], "--",
                label="projected")
    if status["budget_usd"] is not None:
        ax.axhline(status["budget_usd"], color="red", lw=1, label="budget")
    ax.set(xlabel="step", ylabel="USD", title=f"{run.spec.preset}: cost over the run", xlim=(0, run.spec.steps))
    if ax.get_lines():
        ax.legend()
    return _save(plt, fig, path)


def write_report(run: RunView, status: dict, out: str | pathlib.Path) -> list[pathlib.Path]:
    """Write the plots and the summary into `out`; returns the files written."""
    plt = _pyplot()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    numbers = summary(run, status)
    (out / "summary.md").write_text(format_table(numbers) + "\n")
    (out / "summary.json").write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    return [_loss(plt, run, out / "loss.png"), _throughput(plt, run, out / "throughput.png"),
            _cost(plt, run, status, out / "cost.png"), out / "summary.md", out / "summary.json"]
