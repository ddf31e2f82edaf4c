"""Evaluate a checkpoint: validation loss and perplexity of one committed gen, written to the store.

    {"op": "evaluate", "store": URL, "gen": 12, "batches": 8}  ->  eval/00000012.json
        {"gen", "step", "loss", "perplexity", "batches", "split", "weights_sha256"}   (contract.records.EvalRecord)

`gen` defaults to the newest checkpoint that verifies; `batches` to the run spec's eval_batches,
which are the same fixed held-out batches a finishing leg evaluates, so the numbers compare.
"""

from __future__ import annotations

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.events import field
from relaytrain_runtime.contract.records import EvalRecord, perplexity, write_eval
from relaytrain_runtime.store.confine import worker_cache_dir

SPLITS = ("val", "train")


def evaluate_checkpoint(store_url: str, gen: int | None = None, batches: int | None = None, split: str = "val",
                        cache_dir: str | None = None) -> dict:

    from relaytrain_runtime import determinism
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.data import open_dataset
    from relaytrain_runtime.store import open_store
    from relaytrain_runtime.train import build, evaluate

    if split not in SPLITS:
        raise RelayError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    store = open_store(store_url)
    baton = Baton(store)
    spec = baton.spec()
    commit = baton.manifest(gen) if gen is not None else baton.latest()
    if commit is None:
        raise RelayError(f"{store.url} has no checkpoint yet; run a leg first")
    state = baton.load(commit)
    determinism.configure()
    model, _ = build(spec, state, store=store)
    dataset = open_dataset(store, spec, cache_dir)
    n = spec.eval_batches if batches is None else batches
    loss = evaluate(model, spec, dataset, n, split)
    record = EvalRecord(gen=commit["gen"], step=commit["step"], loss=loss, perplexity=perplexity(loss), batches=n,
                        split=split, weights_sha256=commit["weights_sha256"])
    write_eval(store, record)
    return record.to_dict()


def evaluate_op(event: dict, deadline: float) -> dict:
    return evaluate_checkpoint(event["store"], field(event, "gen", int, minimum=1),
                               field(event, "batches", int, minimum=1), field(event, "split", str, "val"),
                               worker_cache_dir(field(event, "cache_dir", str)))
