"""A run as its store holds it, read once as JSON: spec, retained commits, lineage, stream, legs, evals.

The metrics stream is the committed lineage's (`relaytrain_runtime.contract.metrics.read_stream`, the one
rule); `eval/<gen>.json` records outside the lineage are ignored by the same rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import (
    EVAL_PREFIX,
    LEGS_PREFIX,
    MANIFEST_KEY,
    SPEC_KEY,
)
from relaytrain_runtime.contract.metrics import in_lineage, lineage_of, read_commits, read_stream
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import NotFound, Store, open_store


@dataclass
class RunView:
    store_url: str
    spec: RunSpec
    commits: dict[int, dict]  # retained manifests by gen
    lineage: dict[int, str | None]  # gen -> leg id of the commits on the newest commit's parent chain
    train: list[dict] = field(default_factory=list)  # stream records of the lineage, by step
    evals: list[dict] = field(default_factory=list)  # {"step", "val_loss", "perplexity", "gen"} by step
    legs: list[dict] = field(default_factory=list)  # leg (or node) statuses, by gen
    dataset_tokens: int | None = None  # tokens of the train split, when the run's dataset manifest is readable

    @property
    def newest(self) -> dict:
        return self.commits[max(self.lineage)] if self.lineage else {}


def _json(store: Store, key: str):
    try:
        return json.loads(store.read(key))
    except NotFound:
        return None
    except ValueError:
        return None  # a torn or foreign object: telemetry never stops the reader


def _evals(store: Store, stream: list[dict], chain: dict[int, str | None]) -> list[dict]:
    """Evaluations from the stream, completed by the `eval/<gen>.json` objects (a finishing leg's or
    `relaytrain-runtime evaluate`'s) for steps the stream does not have."""
    evals = [{"step": r["step"], "val_loss": r.get("val_loss"), "perplexity": r.get("perplexity"), "gen": r["gen"]}
             for r in stream if r.get("kind") == "eval"]
    have = {e["step"] for e in evals}
    for key in store.list(EVAL_PREFIX):
        rec = _json(store, key)
        if not isinstance(rec, dict) or rec.get("split", "val") != "val" or rec.get("step") in have:
            continue
        if isinstance(rec.get("gen"), int) and not in_lineage(rec["gen"], None, chain):
            continue
        if isinstance(rec.get("step"), int) and isinstance(rec.get("loss"), (int, float)):
            evals.append({"step": rec["step"], "val_loss": rec["loss"], "perplexity": rec.get("perplexity"),
                          "gen": rec.get("gen")})
    return sorted(evals, key=lambda e: e["step"])


def _dataset_tokens(store: Store, spec: RunSpec) -> int | None:
    manifest = _json(store, MANIFEST_KEY)
    if manifest is None and "://" in spec.dataset:
        try:
            manifest = _json(open_store(spec.dataset), MANIFEST_KEY)
        except RelayError:
            manifest = None
    try:
        return sum(int(s["tokens"]) for s in manifest["splits"]["train"]) or None
    except (TypeError, KeyError, ValueError):
        return None


def load_run(store: Store | str) -> RunView:
    """Everything `status` and `report` show, read once. Raises RelayError when the store has no run."""
    store = open_store(store) if isinstance(store, str) else store
    try:
        spec = RunSpec.from_json(store.read(SPEC_KEY))
    except NotFound:
        raise RelayError(f"no run at {store.url} (no {SPEC_KEY}): start one with `relaytrain launch`, "
                         "`relaytrain run --local` or `relaytrain-runtime init`") from None
    commits = read_commits(store)
    chain = lineage_of(commits)
    stream = read_stream(store, commits=commits)
    train = [r for r in stream if r.get("kind") == "train"]
    evals = [r for r in stream if r.get("kind") == "eval"]
    legs = [s for s in (_json(store, k) for k in store.list(LEGS_PREFIX)) if isinstance(s, dict)]
    legs.sort(key=lambda s: (s.get("gen") or 0, s.get("step") or 0))
    return RunView(store_url=store.url, spec=spec, commits=commits, lineage=chain, train=train,
                   evals=_evals(store, evals, chain), legs=legs, dataset_tokens=_dataset_tokens(store, spec))
