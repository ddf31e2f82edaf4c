"""A run's status: where it is, how fast it goes, when it ends and what it will have cost.

Rates: tokens per second over the wall clock between the oldest and newest retained commits of the
lineage (legs' start-up, saves and the gaps between legs included: what the ETA needs); with a
single commit, the stream's measured tokens_per_s of the last steps. Projected cost: the cost so
far scaled linearly from the steps done to the run's steps.
"""

from __future__ import annotations

import math

from relaytrain_runtime.contract.keys import commit_key
from relaytrain_runtime.report.view import RunView

RATE_WINDOW = 20  # stream records averaged when the rate comes from the stream


def _wall_rate(run: RunView) -> float | None:
    timed = sorted((c["created"], c.get("tokens") or 0) for g, c in run.commits.items()
                   if g in run.lineage and isinstance(c.get("created"), (int, float)))
    if len(timed) < 2:
        return None
    (t0, n0), (t1, n1) = timed[0], timed[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 > n0 else None


def _stream_rate(run: RunView) -> float | None:
    rates = [r["tokens_per_s"] for r in run.train[-RATE_WINDOW:] if isinstance(r.get("tokens_per_s"), (int, float))]
    return sum(rates) / len(rates) if rates else None


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def run_status(run: RunView, budget_usd: float | None = None) -> dict:
    """One JSON-able dict: what `relaytrain status` prints."""
    commit = run.newest
    spec = run.spec
    step, tokens = commit.get("step") or 0, commit.get("tokens") or 0
    done = bool(commit.get("done")) or step >= spec.steps
    cost = float(commit.get("cost_usd") or 0.0)
    rate, source = _wall_rate(run), "commits"
    if rate is None:
        rate, source = _stream_rate(run), "stream"
    remaining = max(spec.steps - step, 0) * spec.tokens_per_step
    eta = 0.0 if done else (remaining / rate if rate else None)
    projected = cost if done else (cost * spec.steps / step if step else None)
    last = run.train[-1] if run.train else {}
    val = run.evals[-1] if run.evals else {}
    gen = max(run.lineage) if run.lineage else None
    return {
        "store": run.store_url, "preset": spec.preset, "steps": spec.steps, "step": step, "done": done,
        "epoch": round(tokens / run.dataset_tokens, 4) if run.dataset_tokens else None,
        "data": _data_position(commit),
        "tokens": tokens, "loss": _finite(commit.get("loss")), "lr": last.get("lr"), "grad_norm": last.get("grad_norm"),
        "val_loss": _finite(val.get("val_loss")), "val_step": val.get("step"),
        "perplexity": _finite(val.get("perplexity")),
        "tokens_per_s": round(rate, 3) if rate else None, "rate_source": source if rate else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "cost_usd": round(cost, 6), "projected_cost_usd": round(projected, 6) if projected is not None else None,
        "budget_usd": budget_usd,
        "over_budget": None if budget_usd is None or projected is None else projected > budget_usd,
        "legs": len(run.legs), "checkpoints": len(run.commits), "updated": commit.get("created"),
        "latest_checkpoint": None if gen is None else {
            "gen": gen, "manifest": commit_key(gen), "weights_sha256": commit.get("weights_sha256")},
    }


def _data_position(commit: dict) -> dict | None:
    """{epoch, position, tokens_seen} as the commit recorded it (commits since data positions were recorded)."""
    data = commit.get("data") or {}
    return {k: data[k] for k in ("epoch", "position", "tokens_seen")} if "epoch" in data else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _usd(x) -> str:
    return "-" if x is None else f"${x:,.4f}"


def format_status(s: dict) -> str:
    """The status as aligned lines for a terminal."""
    state = "done" if s["done"] else "in progress"
    pct = 100.0 * s["step"] / s["steps"] if s["steps"] else 0.0
    budget = ""
    if s["budget_usd"] is not None:
        verdict = "-" if s["over_budget"] is None else ("OVER" if s["over_budget"] else "within")
        budget = f"  budget ${s['budget_usd']:,.2f} ({verdict})"
    val = "-"
    if s["val_loss"] is not None:
        val = f"{s['val_loss']:.4f} (step {s['val_step']}, ppl {_num(s['perplexity'], '.2f')})"
    epoch = "" if s["epoch"] is None else f"  epoch {s['epoch']:.3f}"
    if s["data"]:
        epoch = f"  epoch {s['data']['epoch']} (window {s['data']['position']:,})"
    rate = "-" if s["tokens_per_s"] is None else f"{s['tokens_per_s']:,.1f} ({s['rate_source']})"
    ckpt = s["latest_checkpoint"]
    lines = [
        f"run      {s['store']}  ({s['preset']}, {state})",
        f"step     {s['step']}/{s['steps']} ({pct:.1f} %){epoch}  tokens {s['tokens']:,}",
        f"loss     {_num(s['loss'], '.4f')}  val loss {val}",
        f"speed    {rate} tokens/s  ETA {duration(s['eta_s'])}",
        f"cost     ${s['cost_usd']:,.4f} so far  {_usd(s['projected_cost_usd'])} projected{budget}",
        f"legs     {s['legs']}  checkpoints {s['checkpoints']}",
        f"latest   {ckpt['manifest']} (weights {(ckpt['weights_sha256'] or '')[:16]}...)" if ckpt
        else "latest   none yet",
    ]
    return "\n".join(lines)
