"""Relays in the cloud stores, through the real entry points, against protocol servers on 127.0.0.1.

- legs invoked through awslambdaric (S3) and functions-framework (GCS) end bitwise identical
  to one uninterrupted leg on a file:// store;
- two legs racing from one baton: exactly one commits, the other reports `lost_race`, and the
  run stays consistent (20 races per store);
- a leg killed in the middle of uploading a checkpoint object leaves no visible checkpoint; the
  next leg resumes from the previous one and the run still ends identical.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from relaytrain_runtime import pricing
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import new_run
from tests.fixtures.servers import functions_server, gcs_client, lambda_runtime, post_json, throttled_proxy

SPEC = {"preset": "tiny-gpt", "steps": 8, "batch_size": 4, "seq_len": 64, "eval_batches": 2, "keep_last": 2}
LAMBDA_HANDLER = "relaytrain_runtime.handlers.aws_lambda.handler"


def reference_digest(spec: dict, dataset_store, tmp_path) -> str:
    """Final weights of `spec` trained in one uninterrupted leg on a file:// store."""
    from relaytrain_runtime.leg import run_leg

    url = new_run(f"file://{tmp_path}/reference", dataset_store)
    status = run_leg(url, spec=spec)
    assert status["done"]
    return status["weights_sha256"]


@pytest.fixture(scope="module")
def reference(dataset_store, tmp_path_factory):
    return reference_digest(SPEC, dataset_store, tmp_path_factory.mktemp("ref"))


def relay(invoke, url: str, leg_steps=(1, 3, 2, 5)) -> list[dict]:
    """Invoke legs (cycling through `leg_steps` steps each) until the run is done."""
    statuses = []
    for i in range(20):
        status = invoke({"store": url, "spec": SPEC, "max_steps": leg_steps[i % len(leg_steps)]})
        assert "error" not in status, status
        statuses.append(status)
        if status["done"]:
            return statuses
    raise AssertionError(f"relay did not finish: {statuses}")


def test_lambda_relay_on_s3_matches_file_run(s3_bucket, dataset_store, reference):
    url = new_run(f"s3://{s3_bucket}/runs/lambda", dataset_store)
    with lambda_runtime(LAMBDA_HANDLER, memory_mb=2048) as runtime:
        def invoke(event):
            ok, result = runtime.invoke(event, timeout_s=120)
            assert ok, result
            return result

        started = time.time()
        statuses = relay(invoke, url)
        elapsed = time.time() - started
    assert [s["step"] for s in statuses] == [1, 4, 6, 8]
    assert [s["gen"] for s in statuses] == [1, 2, 3, 4]
    final = statuses[-1]
    assert final["status"] == "done" and final["weights_sha256"] == reference
    # cost accrues at the function's memory times Lambda's GB-s price, for time really spent
    rate = pricing.lambda_cost_per_second(2048)
    assert 0 < final["cost_usd"] <= rate * elapsed
    assert statuses[0]["cost_usd"] < final["cost_usd"]
    store = open_store(url)
    assert json.loads(store.read("eval/00000004.json"))["loss"] == final["val_loss"]
    assert Baton(store).gens() == [3, 4]  # keep_last=2


def test_cloud_functions_relay_on_gcs_matches_file_run(gcs_bucket, dataset_store, reference, tmp_path):
    url = new_run(f"gs://{gcs_bucket}/runs/gcf", dataset_store)
    main = tmp_path / "main.py"
    main.write_text("from relaytrain_runtime.handlers.gcf import relaytrain_http  # noqa: F401\n")
    env = {"RELAYTRAIN_TIMEOUT_S": "300", "RELAYTRAIN_VCPU": "2", "RELAYTRAIN_MEMORY_GIB": "4"}
    with functions_server("relaytrain_http", main, env=env) as base:
        def invoke(event):
            code, result = post_json(base, event)
            assert code == 200, result
            return result

        statuses = relay(invoke, url, leg_steps=(2, 1, 4))
        # a leg on a finished run answers done without training
        again = invoke({"store": url})
    assert [s["step"] for s in statuses] == [2, 3, 7, 8]
    assert statuses[-1]["weights_sha256"] == reference
    assert again["done"] and again["leg_steps"] == 0 and again["step"] == 8
    assert statuses[-1]["cost_usd"] > 0


def test_lambda_leg_stops_on_the_context_deadline(s3_bucket, dataset_store):
    """No max_steps: the leg's time box is Lambda's remaining time; it commits before it runs out."""
    url = new_run(f"s3://{s3_bucket}/runs/deadline", dataset_store)
    spec = {**SPEC, "steps": 100000}
    with lambda_runtime(LAMBDA_HANDLER, env={"RELAYTRAIN_MARGIN_S": "1"}) as runtime:
        ok, status = runtime.invoke({"store": url, "spec": spec}, timeout_s=25)
    assert ok and status["status"] == "ok" and not status["done"]
    assert status["leg_steps"] > 0 and status["gen"] == 1
    assert Baton(open_store(url)).latest()["step"] == status["step"]


# --- races -------------------------------------------------------------------------------------
RACE_SPEC = {**SPEC, "steps": 22}


def race_once(url: str, cache_dir) -> list[dict]:
    """Two legs resume from the same baton, each trains one step, then both commit at once."""
    from relaytrain_runtime.leg import run_leg

    barrier = threading.Barrier(2, timeout=60)
    results = [None, None]

    def leg(i):
        results[i] = run_leg(url, max_steps=1, cache_dir=str(cache_dir), on_step=lambda step, loss: barrier.wait())

    threads = [threading.Thread(target=leg, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_twenty_races_one_winner_each(scheme, request, dataset_store, tmp_path):
    from relaytrain_runtime.leg import run_leg

    bucket = request.getfixturevalue("s3_bucket" if scheme == "s3" else "gcs_bucket")
    url = new_run(f"{scheme}://{bucket}/runs/race", dataset_store)
    run_leg(url, spec=RACE_SPEC, max_steps=1)  # gen 1
    store = open_store(url)
    for rnd in range(20):
        a, b = race_once(url, tmp_path / "cache")
        statuses = sorted([a["status"], b["status"]])
        assert statuses == ["lost_race", "ok"], (rnd, a, b)
        winner, loser = (a, b) if a["status"] == "ok" else (b, a)
        assert winner["gen"] == rnd + 2 and winner["step"] == rnd + 2
        assert not loser["done"] and loser["gen"] == rnd + 1  # still the gen it resumed from
        # the loser's checkpoint objects are gone; the winner's verify
        assert not [k for k in store.list("ckpt/") if loser["leg_id"] in k]
        assert Baton(store).latest()["leg_id"] == winner["leg_id"]
    final = run_leg(url)
    assert final["done"] and final["step"] == 22
    assert final["weights_sha256"] == reference_digest(RACE_SPEC, dataset_store, tmp_path)


# --- a worker killed mid-upload ----------------------------------------------------------------
def start_leg(url: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "relaytrain_runtime", "leg", "--store", url, "--max-steps", "2"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(proc: subprocess.Popen, uploading, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"the leg finished before it could be killed mid-upload: {proc.communicate()}"
        if uploading():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the leg never started a multi-part upload")


def check_resume_after_kill(url: str, reference: str) -> None:
    from relaytrain_runtime.leg import run_leg

    store = open_store(url)
    baton = Baton(store)
    assert baton.gens() == [1]  # no checkpoint of the killed leg is visible
    assert baton.latest()["step"] == 1
    nxt = run_leg(url, max_steps=2)
    assert nxt["status"] == "ok" and nxt["step"] == 3 and nxt["gen"] == 2  # resumed from gen 1
    assert run_leg(url)["weights_sha256"] == reference


def test_s3_leg_killed_mid_upload(s3_bucket, moto_server, dataset_store, reference):
    import boto3

    from relaytrain_runtime.leg import run_leg

    url = new_run(f"s3://{s3_bucket}/runs/kill", dataset_store)
    run_leg(url, spec=SPEC, max_steps=1)
    s3 = boto3.client("s3")
    with throttled_proxy(moto_server, bytes_per_s=2e6) as slow:
        proc = start_leg(url, {"AWS_ENDPOINT_URL": slow, "RELAYTRAIN_PART_MB": "5"})
        kill_when(proc, lambda: s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"))
    check_resume_after_kill(url, reference)


def test_gcs_leg_killed_mid_upload(gcs_bucket, fake_gcs, dataset_store, reference):
    from relaytrain_runtime.leg import run_leg

    url = new_run(f"gs://{gcs_bucket}/runs/kill", dataset_store)
    run_leg(url, spec=SPEC, max_steps=1)
    client = gcs_client()
    with throttled_proxy(fake_gcs, bytes_per_s=1e6) as slow:
        proc = start_leg(url, {"STORAGE_EMULATOR_HOST": slow, "RELAYTRAIN_PART_MB": "1"})
        kill_when(proc, lambda: any(b.name.startswith("runs/kill/.parts/")
                                    for b in client.list_blobs(gcs_bucket, prefix="runs/kill/.parts/")))
    check_resume_after_kill(url, reference)
