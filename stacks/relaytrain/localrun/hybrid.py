"""hybrid on this machine: preprocess -> train (node) -> evaluate, against one store.

Raw text comes from Python's own standard library (as the `stdlib` dataset does), written as a
few objects under the blueprint's `dataset.raw_prefix`; preprocessing turns them into the run's
dataset, the node trains on it, and the evaluator scores the final checkpoint.
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
from relaytrain.worker import lambda_vcpu, run_spec
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


def _lambda_seconds_cost(bp: Blueprint, section: str, seconds: float) -> float:
    lam = getattr(bp, section)
    lines = lambda_legs_cost(bp.model_copy(update={"lambda_": lam}), [seconds])
    return sum(line.usd for line in lines if line.kind.startswith("lambda."))  # one invocation, no state machine


def run_local(bp: Blueprint, store_url: str) -> dict:
    spec = run_spec(bp)
    base = open_store(store_url).url.rstrip("/")
    dataset_url = f"{base}/dataset"
    raw_url = write_raw_text(store_url, bp.dataset.raw_prefix)
    pre_threads = threads_for(lambda_vcpu(bp.preprocess.memory_mb))
    print(f"{bp.name}: 1/3 preprocess {raw_url} -> {dataset_url}", file=sys.stderr, flush=True)
    t0 = time.time()
    runtime("preprocess", ["--source", raw_url, "--store", dataset_url, "--vocab-size", str(spec.model.vocab_size),
                           "--suffix", ".txt"], threads=pre_threads, capture=True)
    pre_s = time.time() - t0

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
