"""Shards against real protocol servers: moto's S3 server and fake-gcs-server, on 127.0.0.1.

The same rounds on S3 and GCS give the file:// run's model bit for bit; a duplicated shard, a
stale shard and two reducers racing to commit the same round are handled by the store's fence.
"""

import threading
from pathlib import Path

import pytest

from relaytrain_runtime.shards.entry import reduce_op, shard_op, status_op
from relaytrain_runtime.store import open_store
from tests.fixtures.shards import bitwise_equal, drive, weights

SPEC = {"preset": "tiny-gpt", "steps": 2, "batch_size": 4, "seq_len": 32, "eval_batches": 1}
FUNCS = {"shards": 2, "sync": "gradients", "exchange_dtype": "fp32"}


@pytest.fixture
def cloud_run(request, shards_dataset):
    """A run URL on S3 (moto) or GCS (fake-gcs-server) holding the test dataset."""
    if request.param == "s3":
        url = f"s3://{request.getfixturevalue('s3_bucket')}/run"
    else:
        url = f"gs://{request.getfixturevalue('gcs_bucket')}/run"
    store = open_store(url)
    for path in sorted(Path(shards_dataset).rglob("*")):
        if path.is_file():
            store.write(path.relative_to(shards_dataset).as_posix(), path.read_bytes())
    return url


@pytest.mark.parametrize("cloud_run", ["s3", "gs"], indirect=True)
def test_rounds_on_cloud_store_match_file_store(cloud_run, shards_run):
    local = shards_run("local")
    drive(local, SPEC, FUNCS)

    url = cloud_run
    status_op({"op": "status", "store": url, "spec": SPEC, "functions": FUNCS})
    # round 0 with a duplicated shard, then two reducers racing to commit it
    r0 = [shard_op({"op": "shard", "store": url, "round": 0, "shard": k, "shards": 2}) for k in (0, 1, 0)]
    assert {r["status"] for r in r0} == {"ok"}
    results = []

    def reduce():
        results.append(reduce_op({"op": "reduce", "store": url, "round": 0, "baton": r0[0]["baton"]}))

    racers = [threading.Thread(target=reduce) for _ in range(2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    statuses = sorted(r["status"] for r in results)
    assert statuses.count("committed") == 1, results
    assert set(statuses) <= {"committed", "lost_race", "stale", "missing"}, results
    assert len(open_store(url).list("baton/")) == 1
    # a stale shard of the committed round writes nothing
    assert shard_op({"op": "shard", "store": url, "round": 0, "shard": 1})["status"] == "stale"
    drive(url, SPEC, FUNCS)
    assert bitwise_equal(weights(url), weights(local))
    assert open_store(url).list("rounds/") == []


@pytest.mark.parametrize("cloud_run", ["s3", "gs"], indirect=True)
def test_killed_shard_on_cloud_store(cloud_run, shards_run):
    """A shard process SIGKILLed mid-flight (start-up, load, compute or upload) against the real
    protocol server: the reducer reports it missing, the retry completes the round, same model."""
    import os
    import signal
    import subprocess
    import sys
    import time

    local = shards_run("local")
    drive(local, SPEC, FUNCS, rounds=1)
    url = cloud_run
    status_op({"op": "status", "store": url, "spec": SPEC, "functions": FUNCS})
    cmd = [sys.executable, "-m", "relaytrain_runtime", "shard", "--store", url, "--round", "0", "--shard", "1"]
    victim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert shard_op({"op": "shard", "store": url, "round": 0, "shard": 0})["status"] == "ok"
    out = reduce_op({"op": "reduce", "store": url, "round": 0})
    assert out["status"] == "missing" and out["missing"] == [1]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert reduce_op({"op": "reduce", "store": url, "round": 0})["status"] == "committed"
    assert bitwise_equal(weights(url), weights(local))
