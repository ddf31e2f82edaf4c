"""Shared helpers for the test_shards_* modules (no tests here): a small dataset built once per
session and copied into each run store, tiny specs, and in-process round drivers."""

import shutil

import pytest
import torch

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import build_stdlib_dataset
from relaytrain_runtime.store import open_store

CORPUS_BYTES = 400_000  # a slice of the stdlib sources: the dataset builds in about a second

SPEC = {"preset": "tiny-gpt", "steps": 8, "batch_size": 8, "seq_len": 32, "lr": 2e-3, "min_lr": 2e-4,
        "warmup_steps": 2, "eval_batches": 2}


@pytest.fixture(scope="session")
def shards_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards-dataset")
    build_stdlib_dataset(open_store(f"file://{root}"), 4096, cap_bytes=CORPUS_BYTES)
    return root


def run_with_dataset(dataset_root, path) -> str:
    """file:// URL of an empty run store at `path` that already holds the dataset."""
    shutil.copytree(dataset_root / "data", path / "data")
    return f"file://{path}"


@pytest.fixture
def new_run(shards_dataset, tmp_path):
    """new_run(name) -> file:// URL of an empty run store that already holds the dataset."""
    return lambda name="run": run_with_dataset(shards_dataset, tmp_path / name)


def weights(url: str) -> dict[str, torch.Tensor]:
    _, state = Baton(open_store(url)).resume()
    return state["weights"]


def rel_diff(a: dict, b: dict) -> float:
    """||a - b|| / ||b|| over all parameters: the relative difference of two models."""
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in b)
    return (num / sum(float(b[k].double().pow(2).sum()) for k in b)) ** 0.5


def max_tensor_rel_diff(a: dict, b: dict) -> tuple[float, str]:
    """The largest per-tensor relative difference, and the tensor's name."""
    return max((float((a[k].double() - b[k].double()).norm() / b[k].double().norm()), k) for k in b)


def bitwise_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)


def drive(url: str, spec: dict, functions: dict, rounds: int | None = None) -> list[dict]:
    """Run rounds in-process through the entry points (shards in order, then one reduce)."""
    from relaytrain_runtime.shards.entry import reduce_op, shard_op, status_op

    st = status_op({"op": "status", "store": url, "spec": spec, "functions": functions})
    rnd, out = st["current_round"], []
    K = functions["shards"]
    while not st["done"] and (rounds is None or len(out) < rounds):
        results = [shard_op({"op": "shard", "store": url, "round": rnd, "shard": k, "shards": K}) for k in range(K)]
        assert {r["status"] for r in results} == {"ok"}, results
        st = reduce_op({"op": "reduce", "store": url, "round": rnd, "baton": results[0]["baton"]})
        assert st["status"] == "committed", st
        out.append(st)
        rnd = st["next_round"]
    return out
