"""hybrid on this machine: preprocess -> train (node) -> evaluate, against one store.

The store stands in for the stack's bucket: the corpus is the objects under the blueprint's
`dataset.raw_prefix` in it (put yours there, in any format `dataset.format` reads), or, when there
are none, raw text from Python's own standard library (as the `stdlib` dataset does), written there
as a few .txt objects. Preprocessing turns it into the run's dataset with the blueprint's `dataset:`
settings (relaytrain.worker.preparation_flags; a tokenizer URL in the bucket is read from the store),
the node trains on it, and the evaluator scores the final checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import sysconfig
import time

from relaytrain.blueprint.schema import Blueprint
from relaytrain.localrun.node import cost_report, train_node
from relaytrain.localrun.process import runtime, threads_for
from relaytrain.plan import lambda_legs_cost
from relaytrain.plan.report import usd
from relaytrain.worker import lambda_vcpu, preparation_flags, run_spec
from relaytrain_runtime.store import open_store

RAW_OBJECTS = 4
RAW_BYTES = 1_000_000  # per object


def write_raw_text(store_url: str, prefix: str) -> str:
    """A few raw .txt objects from the stdlib sources; returns the URL they live under."""
    store = open_store(store_url)
    files = sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    chunk, n = [], 0
    for path in files:
        chunk.append(path.read_text(encoding="utf-8", errors="replace"))
        if sum(map(len, chunk)) >= RAW_BYTES:
            store.write(f"{prefix}part-{n:03d}.txt", "\n".join(chunk).encode())
            chunk, n = [], n + 1
            if n == RAW_OBJECTS:
                break
    return f"{store.url.rstrip('/')}/{prefix.rstrip('/')}"


def corpus(store_url: str, prefix: str) -> tuple[str, list[str]]:
    """The URL of the run's corpus (the objects under `prefix`, else the stdlib text written there) and the
    extra preprocess options it needs (`--suffix .txt` for the stdlib text)."""
    store = open_store(store_url)
    if store.list(prefix):
        return f"{store.url.rstrip('/')}/{prefix.rstrip('/')}", []
    return write_raw_text(store_url, prefix), ["--suffix", ".txt"]


def local_flags(bp: Blueprint, base: str) -> list[str]:
    """The blueprint's preparation options, a tokenizer URL in the bucket mapped into the local store."""
    flags, bucket = preparation_flags(bp), f"s3://{bp.dataset.bucket}/"
    return [f"{base}/{flag[len(bucket):]}" if bp.dataset.bucket and flag.startswith(bucket) else flag
            for flag in flags]


def _lambda_seconds_cost(bp: Blueprint, section: str, seconds: float) -> float:
    lam = getattr(bp, section)
    lines = lambda_legs_cost(bp.model_copy(update={"lambda_": lam}), [seconds])
    return sum(line.usd for line in lines if line.kind.startswith("lambda."))  # one invocation, no state machine


def preprocess_local(bp: Blueprint, store_url: str) -> tuple[str, float]:
    """Stage 1: the corpus -> the run's dataset (`STORE/dataset`), as the Lambda fan-out would; (its URL, seconds)."""
    base = open_store(store_url).url.rstrip("/")
    dataset_url = f"{base}/dataset"
    raw_url, extra = corpus(store_url, bp.dataset.raw_prefix)
    print(f"{bp.name}: 1/3 preprocess {raw_url} -> {dataset_url}", file=sys.stderr, flush=True)
    t0 = time.time()
    runtime("preprocess", ["--source", raw_url, "--store", dataset_url, *local_flags(bp, base), *extra],
            threads=threads_for(lambda_vcpu(bp.preprocess.memory_mb)), capture=True)
    return dataset_url, time.time() - t0


def run_local(bp: Blueprint, store_url: str) -> dict:
    spec = run_spec(bp)
    dataset_url, pre_s = preprocess_local(bp, store_url)

    print(f"{bp.name}: 2/3 train on the node", file=sys.stderr, flush=True)
    status, node_s = train_node(bp, store_url, dataclasses.replace(spec, dataset=dataset_url))

    print(f"{bp.name}: 3/3 evaluate the final checkpoint", file=sys.stderr, flush=True)
    t0 = time.time()
    result = json.loads(runtime("evaluate", ["--store", store_url], capture=True,
                                threads=threads_for(lambda_vcpu(bp.evaluate.memory_mb))).strip().splitlines()[-1])
    eval_s = time.time() - t0

    node_text, node_cost = cost_report(bp, node_s)
    pre_cost = _lambda_seconds_cost(bp, "preprocess", pre_s)
    eval_cost = _lambda_seconds_cost(bp, "evaluate", eval_s)
    total = pre_cost + node_cost + eval_cost
    print(f"done: step {status.get('step')}, validation loss {result.get('loss')}\n"
          f"  preprocess {pre_s:.1f} s on Lambda {bp.preprocess.memory_mb} MB: {usd(pre_cost)}\n"
          f"  train: {node_text}\n"
          f"  evaluate {eval_s:.1f} s on Lambda {bp.evaluate.memory_mb} MB: {usd(eval_cost)}\n"
          f"  total on AWS: {usd(total)}", file=sys.stderr)
    seconds = {"preprocess": pre_s, "train": node_s, "evaluate": eval_s}
    return {"status": status, "evaluation": result, "seconds": seconds,
            "cloud_cost_usd": total}
