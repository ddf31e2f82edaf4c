"""One structured log line per commit, for clouds that turn logs into metrics (GCP log-based metrics).

Where RELAYTRAIN_COMMIT_LOG=1 (the GCP functions and nodes), the engine prints `commit_log_line(...)` on
stderr after every commit (stdout is the CLI verbs' JSON result). Cloud Run functions (the shards) parse a JSON
line on stdout or stderr into the entry's `jsonPayload` (`severity` and `message` become the entry's own); the
Pulumi program's log-based metrics (`relaytrain.gcp.components.RunMonitoring`)
filter on `jsonPayload.relaytrain="commit"` and extract the numbers below. Pure: no I/O.

    {"relaytrain": "commit", "run": RUN, "worker": LEG, "gen", "step", "tokens", "loss", "done",
     "cost_usd", "tokens_per_s", "step_s", "val_loss", "perplexity", "severity": "INFO", "message"}
"""

from __future__ import annotations

import json
import math

EVENT = "commit"  # jsonPayload.relaytrain of every commit line
COMMIT_LOG_ENV = "RELAYTRAIN_COMMIT_LOG"  # "1": the engine prints the line (the GCP stacks set it on their workers)
FIELDS = ("step", "tokens", "loss", "cost_usd", "tokens_per_s", "step_s", "val_loss", "perplexity")  # numbers


def _mean(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return sum(values) / len(values) if values else None


def _clean(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def commit_log_line(commit: dict, records: list[dict], *, run: str, worker: str | None = None) -> str:
    """The log line of one commit: `commit` is its manifest (or the leg status: gen, step, tokens, loss,
    done, cost_usd), `records` the metrics-stream records it wrote, `run` the run's name (a metric label)."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    line = {
        "relaytrain": EVENT, "run": run, "worker": worker or commit.get("leg_id"), "gen": commit.get("gen"),
        "step": commit.get("step"), "tokens": commit.get("tokens"), "loss": _clean(commit.get("loss")),
        "done": bool(commit.get("done")), "cost_usd": commit.get("cost_usd"),
        "tokens_per_s": _mean(train, "tokens_per_s"), "step_s": _mean(train, "step_s"),
        "val_loss": _clean(evals[-1].get("val_loss")) if evals else None,
        "perplexity": _clean(evals[-1].get("perplexity")) if evals else None,
        "severity": "INFO",
    }
    loss = "-" if line["loss"] is None else f"{line['loss']:.4f}"
    line["message"] = f"relaytrain {run}: commit gen {line['gen']} step {line['step']} loss {loss}"
    return json.dumps({k: v for k, v in line.items() if v is not None}, sort_keys=True)
