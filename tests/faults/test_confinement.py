"""Confinement: every store URL, key and cache directory stays inside the run ('..', '.', absolute keys
refused), and the preprocess op reads only under the deployment's configured source prefix (file:// sources
only where the operator allows them, never /proc, /sys or /dev)."""

import json
import os
import time

import pytest

from relaytrain_runtime.handlers.ops import run_op
from relaytrain_runtime.store import StoreError, check_source, open_store
from relaytrain_runtime.store.cache import ShardCache
from relaytrain_runtime.store.confine import ALLOW_FILE_SOURCES_ENV, SOURCE_PREFIX_ENV, within


@pytest.mark.parametrize("url", [
    "file:///tmp/runs/a/../../etc", "file:///tmp/runs/./a", "/tmp/runs/a/..", "runs/../../x",
    "s3://bucket/runs/a/../../x", "s3://bucket/runs/./a", "s3://bucket/runs//a", "s3://bucket/../x",
    "gs://bucket/runs/a/../../x", "gs://bucket/runs/a/..", "s3://bucket/runs/a?x=1", "gs://bucket/runs/a#frag",
])
def test_store_urls_with_dot_segments_are_refused(url):
    with pytest.raises(StoreError, match=r"not allowed"):
        open_store(url)


@pytest.mark.parametrize("key", ["../spec.json", "/etc/passwd", "ckpt/../../x", "a//b", "./a", ""])
def test_store_keys_outside_the_run_are_refused(tmp_path, key):
    store = open_store(f"file://{tmp_path}/run")
    for op in (store.read, store.exists, store.delete, lambda k: store.write(k, b"x"), lambda k: store.create(k, b"x")):
        with pytest.raises(StoreError, match="invalid store key"):
            op(key)
    assert not (tmp_path / "spec.json").exists() and not (tmp_path / "run").exists()


def test_cache_directory_with_dot_segments_is_refused(tmp_path):
    with pytest.raises(StoreError, match=r"cache directory .*without '\.' or '\.\.' segments"):
        ShardCache(f"{tmp_path}/cache/../../escape")
    assert not (tmp_path.parent / "escape").exists()
    assert ShardCache(tmp_path / "cache").root == tmp_path / "cache"


def test_within_matches_whole_segments():
    assert within("s3://b/raw/books", "s3://b/raw") and within("s3://b/raw", "s3://b/raw/")
    assert not within("s3://b/rawx", "s3://b/raw") and not within("s3://other/raw", "s3://b/raw")
    assert not within("gs://b/raw", "s3://b/raw") and within("file:///data/x", "/data")


def _preprocess_plan(source: str, store: str, suffix: str = "") -> dict:
    event = {"op": "preprocess", "phase": "plan", "store": store, "source": source, "vocab_size": 300,
             "suffix": suffix}
    return run_op(event, time.time() + 60)


def test_proc_self_environ_exploit_is_refused(tmp_path, monkeypatch):
    """The reported probe: source file:///proc/self with suffix `environ` tokenized the handler's
    environment (on Lambda: the role's credentials) into a store the caller chose."""
    monkeypatch.setenv("RELAYTRAIN_PROBE_SECRET", "s3cr3t-value")
    store = f"file://{tmp_path}/stolen"
    for env in ({}, {ALLOW_FILE_SOURCES_ENV: "1"}, {ALLOW_FILE_SOURCES_ENV: "1", SOURCE_PREFIX_ENV: "file:///"}):
        for name in (ALLOW_FILE_SOURCES_ENV, SOURCE_PREFIX_ENV):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = _preprocess_plan("file:///proc/self", store, suffix="environ")
        assert result["error"]["type"] == "StoreError", (env, result)
        assert ("file sources are refused" in result["error"]["message"]
                or "virtual filesystem" in result["error"]["message"]), result
        assert not (tmp_path / "stolen").exists()  # nothing was read, nothing was written


def test_symlink_into_proc_is_refused(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    os.symlink("/proc/self", tmp_path / "corpus" / "self")
    monkeypatch.setenv(ALLOW_FILE_SOURCES_ENV, "1")
    monkeypatch.setenv(SOURCE_PREFIX_ENV, f"file://{tmp_path}/corpus")
    with pytest.raises(StoreError, match="virtual filesystem"):
        check_source(f"file://{tmp_path}/corpus/self")


def test_sources_outside_the_configured_prefix_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(SOURCE_PREFIX_ENV, "s3://corpora/raw,gs://corpora/raw")
    monkeypatch.delenv(ALLOW_FILE_SOURCES_ENV, raising=False)
    for source in ("s3://corpora/rawx", "s3://other/raw", "gs://corpora/private", "s3://corpora/raw/../secret"):
        result = _preprocess_plan(source, f"file://{tmp_path}/ds")
        assert "error" in result and ("outside this deployment's source prefix" in result["error"]["message"]
                                      or "not allowed" in result["error"]["message"]), (source, result)
    assert check_source("s3://corpora/raw/books") == "s3://corpora/raw/books"
    result = _preprocess_plan(f"file://{tmp_path}", f"file://{tmp_path}/ds")
    assert "file sources are refused" in result["error"]["message"] and "RELAYTRAIN_ALLOW_FILE_SOURCES=1" in (
        result["error"]["message"])


def test_allowed_file_source_under_the_prefix_is_read(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    monkeypatch.setenv(ALLOW_FILE_SOURCES_ENV, "1")
    monkeypatch.setenv(SOURCE_PREFIX_ENV, f"file://{tmp_path}/corpus")
    result = _preprocess_plan(f"file://{corpus}", f"file://{tmp_path}/ds", suffix=".txt")
    assert "error" not in result and result["count"] == 1, result
    outside = _preprocess_plan(f"file://{tmp_path}", f"file://{tmp_path}/ds2", suffix=".txt")
    assert "outside this deployment's source prefix" in outside["error"]["message"]
    assert json.loads(open_store(f"file://{tmp_path}/ds").read("data/tokenizer.json"))


def test_an_events_cache_dir_is_confined_to_the_deployments(tmp_path, monkeypatch):
    """A worker caches dataset shards where its deployment says (RELAYTRAIN_CACHE_DIR); an event may name a
    directory only below it, never elsewhere, and never with dot segments: a structured error, no shard written."""
    from relaytrain_runtime.store.confine import CACHE_DIR_ENV, worker_cache_dir

    deployed = tmp_path / "efs"
    monkeypatch.setenv(CACHE_DIR_ENV, str(deployed))
    assert worker_cache_dir(None) == str(deployed)
    assert worker_cache_dir(str(deployed / "run1")) == str(deployed / "run1")
    for asked in (str(tmp_path / "elsewhere"), "/etc", str(deployed / ".." / "x")):
        with pytest.raises(StoreError):
            worker_cache_dir(asked)
    store = f"file://{tmp_path / 'run'}"
    for op in ("leg", "shard", "evaluate"):
        event = {"op": op, "store": store, "cache_dir": str(tmp_path / "elsewhere"), "round": 0, "shard": 0}
        out = run_op(event, time.time() + 60)
        assert out["error"]["type"] in ("StoreError", "BadEvent") and "cache" in out["error"]["message"], (op, out)
    assert not (tmp_path / "elsewhere").exists()
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert worker_cache_dir(str(tmp_path / "local")) == str(tmp_path / "local")  # local runs: no deployment cache
