"""Scale: a leg trains on a corpus larger than the memory its process may use (RLIMIT_DATA), because shards are
memory-mapped from the local cache and fetched only when a step reads them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from relaytrain_runtime.contract.keys import MANIFEST_KEY
from relaytrain_runtime.data import SHARD_TOKENS
from relaytrain_runtime.store import open_store

LIMIT = 768 << 20  # RLIMIT_DATA of the leg: torch's import needs about 230 MB of it
SHARDS = 400  # x 2 MiB (1 Mi uint16 tokens) = 800 MiB of tokens
CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, ({limit}, {limit}))
from relaytrain_runtime.leg import run_leg
status = run_leg(sys.argv[1], max_steps=2, cache_dir=sys.argv[2])
from relaytrain_runtime.store import open_store
store = open_store(sys.argv[3])
try:  # the old way, every shard read into memory, cannot fit
    whole = [store.read(k) for k in store.list("data/train-")]
    loaded = "fits"
except MemoryError:
    loaded = "MemoryError"
print(json.dumps({{"step": status["step"], "loss": status["loss"], "whole": loaded}}))
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    block = rng.integers(3, 4096, size=SHARD_TOKENS, dtype=np.uint16)
    import hashlib

    shards = []
    for i in range(SHARDS):
        raw = np.roll(block, i).tobytes()  # distinct contents, cheap to make
        name = f"data/train-{i:05d}.bin"
        (root / "data").mkdir(exist_ok=True)
        (root / name).write_bytes(raw)
        shards.append({"name": name, "tokens": SHARD_TOKENS, "sha256": hashlib.sha256(raw).hexdigest(),
                       "compression": None})
    val = block[:4096].tobytes()
    (root / "data/val-00000.bin").write_bytes(val)
    manifest = {"format": 1, "tokenizer": "data/tokenizer.json", "vocab_size": 4096, "dtype": "uint16",
                "special_tokens": {"<|endoftext|>": 0, "<pad>": 1, "<mask>": 2}, "corpus": {"name": "random"},
                "splits": {"train": shards, "val": [{"name": "data/val-00000.bin", "tokens": 4096,
                                                    "sha256": hashlib.sha256(val).hexdigest(), "compression": None}]}}
    open_store(str(root)).write(MANIFEST_KEY, json.dumps(manifest).encode())
    return root


def test_leg_trains_on_a_corpus_larger_than_its_memory_limit(big, tmp_path):
    corpus_bytes = sum(p.stat().st_size for p in (big / "data").glob("train-*.bin"))
    assert corpus_bytes > LIMIT  # the corpus does not fit in what the process may allocate
    run = f"file://{tmp_path}/run"
    spec = {"preset": "tiny-gpt", "steps": 4, "batch_size": 4, "seq_len": 64, "eval_batches": 1,
            "dataset": f"file://{big}"}
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.spec import RunSpec

    Baton(open_store(run)).init(RunSpec(**spec))
    cache = tmp_path / "cache"
    out = subprocess.run([sys.executable, "-c", CHILD.format(limit=LIMIT), run, str(cache), f"file://{big}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["step"] == 2 and result["loss"] > 0
    assert result["whole"] == "MemoryError"
    cached = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert 1 <= len(cached) <= 2 * 4 * 2 + 1 < SHARDS  # only the shards two steps (and eval) read were fetched
