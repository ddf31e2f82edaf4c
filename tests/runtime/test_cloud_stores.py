"""S3 and GCS stores against real protocol servers (moto, fake-gcs-server) on 127.0.0.1,
checked against the same contract as the file:// store."""

import hashlib
import os
import threading

import pytest

from relaytrain_runtime.store import NotFound, StoreError, open_store
from relaytrain_runtime.store.cache import ShardCache


@pytest.fixture(params=["file", "s3", "gs"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path}/store")
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return open_store(f"s3://{bucket}/runs/r1")
    bucket = request.getfixturevalue("gcs_bucket")
    return open_store(f"gs://{bucket}/runs/r1")


def test_read_write_list_delete(store):
    store.check()
    assert store.list() == []
    store.write("spec.json", b"{}")
    store.write("ckpt/00000001-a/weights", b"w" * 1000)
    store.write("baton/00000001.json", b"1")
    assert store.read("spec.json") == b"{}"
    store.write("spec.json", b"{\"v\": 2}")
    assert store.read("spec.json") == b"{\"v\": 2}"
    assert store.size("ckpt/00000001-a/weights") == 1000
    assert store.exists("baton/00000001.json") and not store.exists("baton/00000002.json")
    assert store.list() == ["baton/00000001.json", "ckpt/00000001-a/weights", "spec.json"]
    assert store.list("baton/") == ["baton/00000001.json"]
    store.delete("baton/00000001.json")
    store.delete("baton/00000001.json")  # absent: no error
    assert store.list("baton/") == []
    with pytest.raises(NotFound, match="baton/00000001.json does not exist"):
        store.read("baton/00000001.json")
    with pytest.raises(NotFound):
        store.size("nothing")
    with pytest.raises(StoreError, match="invalid store key"):
        store.read("../escape")


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_prefixes_are_isolated(scheme, request):
    bucket = request.getfixturevalue("s3_bucket" if scheme == "s3" else "gcs_bucket")
    store = open_store(f"{scheme}://{bucket}/runs/r1")
    other = open_store(f"{scheme}://{bucket}/runs/r2")
    store.write("spec.json", b"a")
    other.write("spec.json", b"b")
    assert store.read("spec.json") == b"a" and store.list() == ["spec.json"]
    assert other.read("spec.json") == b"b"


def test_create_is_a_fence(store):
    assert store.create("baton/00000002.json", b"leg-a")
    assert not store.create("baton/00000002.json", b"leg-b")
    assert store.read("baton/00000002.json") == b"leg-a"


def test_create_race_exactly_one_winner(store):
    """20 rounds of 4 threads creating the same key: one winner per round, its bytes stick."""
    for rnd in range(20):
        key = f"baton/{rnd:08d}.json"
        barrier = threading.Barrier(4)
        wins = {}

        def racer(i, key=key, barrier=barrier, wins=wins):
            barrier.wait()
            wins[i] = store.create(key, f"leg-{i}".encode())

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, won in wins.items() if won]
        assert len(winners) == 1, f"round {rnd}: {wins}"
        assert store.read(key) == f"leg-{winners[0]}".encode()


def test_large_file_parallel_parts_roundtrip(store, tmp_path, monkeypatch):
    """A file of several parts goes up as multipart (S3) / composite (GCS) and comes back equal."""
    import relaytrain_runtime.store.gcs as gcs
    import relaytrain_runtime.store.s3 as s3

    monkeypatch.setattr(gcs, "PART_SIZE", 1024 * 1024)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    store = open_store(store.url)  # re-open with the small parts
    data = os.urandom(12 * 1024 * 1024 + 12345)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    store.put_file("ckpt/00000001-a/weights.safetensors", src)
    assert store.size("ckpt/00000001-a/weights.safetensors") == len(data)
    store.get_file("ckpt/00000001-a/weights.safetensors", dst)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert [p for p in os.listdir(tmp_path) if ".part-" in p] == []
    # the baton writes and reads bytes: the same parallel path
    store.write("ckpt/00000001-a/optimizer.safetensors", data[::-1])
    assert store.read("ckpt/00000001-a/optimizer.safetensors") == data[::-1]
    assert store.list() == ["ckpt/00000001-a/optimizer.safetensors", "ckpt/00000001-a/weights.safetensors"]
    chunks = []
    buf = store.read_buffer("ckpt/00000001-a/optimizer.safetensors", on_chunk=lambda v: chunks.append(bytes(v)))
    assert buf == data[::-1] and b"".join(chunks) == data[::-1]  # consecutive pieces, in order
    if not store.url.startswith("file://"):
        assert len(chunks) >= 3  # it really came in parts
    store.write_parts("ckpt/00000001-a/joined", [b"head", memoryview(data), b"tail"])
    assert store.read("ckpt/00000001-a/joined") == b"head" + data + b"tail"
    store.delete("ckpt/00000001-a/joined")
    store.write("empty", b"")
    assert store.read("empty") == b"" and store.size("empty") == 0 and store.read_buffer("empty") == bytearray()


def test_s3_upload_killed_mid_object_leaves_nothing(s3_bucket, tmp_path, monkeypatch):
    """A multipart upload that dies after its first part never becomes a visible object."""
    import relaytrain_runtime.store.s3 as s3

    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)
    store = open_store(f"s3://{s3_bucket}/run")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(11 * 1024 * 1024))
    real = store._client.upload_part
    calls = []

    def dying_upload_part(**kw):
        calls.append(kw["PartNumber"])
        if len(calls) > 1:
            raise ConnectionResetError("worker killed mid-upload")
        return real(**kw)

    monkeypatch.setattr(store._client, "upload_part", dying_upload_part)
    with pytest.raises(ConnectionResetError):
        store.put_file("ckpt/00000002-b/weights.safetensors", src)
    assert calls, "the upload did not go through multipart"
    assert not store.exists("ckpt/00000002-b/weights.safetensors")
    assert store.list() == []


def test_gcs_upload_killed_mid_object_leaves_nothing(gcs_bucket, tmp_path, monkeypatch):
    """A composite upload that dies before `compose` never becomes a visible object."""
    import relaytrain_runtime.store.gcs as gcs

    monkeypatch.setattr(gcs, "PART_SIZE", 1024 * 1024)
    store = open_store(f"gs://{gcs_bucket}/run")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024))

    from google.cloud.storage import Blob

    def dying_compose(self, *a, **kw):
        raise ConnectionResetError("worker killed before compose")

    monkeypatch.setattr(Blob, "compose", dying_compose)
    with pytest.raises(ConnectionResetError):
        store.put_file("ckpt/00000002-b/weights.safetensors", src)
    assert not store.exists("ckpt/00000002-b/weights.safetensors")
    assert store.list() == []


def test_missing_bucket_is_one_clear_line(moto_server, fake_gcs):
    for url in ("s3://no-such-bucket-relaytrain/x", "gs://no-such-bucket-relaytrain/x"):
        with pytest.raises(StoreError, match="bucket 'no-such-bucket-relaytrain' does not exist"):
            open_store(url).check()
    with pytest.raises(StoreError, match="expected s3://bucket/prefix"):
        open_store("s3:///prefix-only")


def test_cli_reports_store_error_in_one_line(moto_server):
    """A store error reaches the user as one line and exit 2 (no traceback)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c",
                           "import sys; from relaytrain_runtime import RelayError;"
                           "from relaytrain_runtime.store import open_store\n"
                           "try:\n open_store('s3://no-such-bucket-relaytrain/x').read('spec.json')\n"
                           "except RelayError as e:\n print(e); sys.exit(2)"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.strip().count("\n") == 0 and "no-such-bucket-relaytrain" in proc.stdout


# --- shard cache ---------------------------------------------------------------------------
def test_cache_verifies_and_shares(s3_bucket, tmp_path):
    store = open_store(f"s3://{s3_bucket}/run")
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    store.write("data/shard-00000.bin", data)
    cache = ShardCache(tmp_path / "cache")
    results, errors = [], []

    def reader():
        try:
            results.append(cache.fetch(store, "data/shard-00000.bin", digest, size=len(data)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1 and results[0].read_bytes() == data
    assert results[0].name == digest
    assert sorted(p.name for p in results[0].parent.iterdir()) == [digest, f"{digest}.lock"]

    # a hit needs no store: the object may even be gone
    store.delete("data/shard-00000.bin")
    assert cache.fetch(store, "data/shard-00000.bin", digest).read_bytes() == data


def test_cache_refuses_corrupt_object(s3_bucket, tmp_path):
    store = open_store(f"s3://{s3_bucket}/run")
    store.write("data/shard-00000.bin", b"tampered")
    cache = ShardCache(tmp_path / "cache")
    digest = hashlib.sha256(b"original").hexdigest()
    with pytest.raises(StoreError, match="data/shard-00000.bin has sha256"):
        cache.fetch(store, "data/shard-00000.bin", digest)
    assert not cache.path(digest).exists()
    assert [p for p in cache.path(digest).parent.iterdir() if p.suffix == ".tmp"] == []


def test_cache_refetches_truncated_entry(s3_bucket, tmp_path):
    store = open_store(f"s3://{s3_bucket}/run")
    store.write("data/shard.bin", b"0123456789")
    digest = hashlib.sha256(b"0123456789").hexdigest()
    cache = ShardCache(tmp_path / "cache")
    path = cache.fetch(store, "data/shard.bin", digest, size=10)
    path.write_bytes(b"01234")  # damaged by something outside the cache
    assert cache.fetch(store, "data/shard.bin", digest, size=10).read_bytes() == b"0123456789"
    path.write_bytes(b"0123456780")  # same size, wrong content: caught with verify=True
    assert cache.fetch(store, "data/shard.bin", digest, verify=True).read_bytes() == b"0123456789"
