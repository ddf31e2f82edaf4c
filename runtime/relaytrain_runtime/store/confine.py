"""Confinement: the one place that says which URLs and local paths a worker may touch.

- Store URLs (file://, a plain path, s3://, gs://) and local directories (the shard cache) never hold
  '.' or '..' segments, a query or a fragment; bucket prefixes hold no empty segments. Store keys are
  checked by `store.base.check_key` (relative, no '..').
- Preprocess sources (`check_source`) come from the deployment's configuration, never from the event
  unchecked: RELAYTRAIN_SOURCE_PREFIX (set by the stacks; one URL prefix, or several separated by commas)
  is the only place a source may be under; file:// (and plain path) sources are refused unless the
  operator sets RELAYTRAIN_ALLOW_FILE_SOURCES=1, and even then never reach /proc, /sys or /dev. Without
  RELAYTRAIN_SOURCE_PREFIX bucket sources are bounded by the worker's IAM role alone.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from relaytrain_runtime.store.base import StoreError

SOURCE_PREFIX_ENV = "RELAYTRAIN_SOURCE_PREFIX"
RUN_PREFIX_ENV = "RELAYTRAIN_RUN_PREFIX"  # where preprocess may read a run's pretrained base (--tokenizer pretrained)
ALLOW_FILE_SOURCES_ENV = "RELAYTRAIN_ALLOW_FILE_SOURCES"
BUCKET_SCHEMES = ("s3", "gs")
VIRTUAL_FILESYSTEMS = ("/proc", "/sys", "/dev")


def _dot_segments(path: str) -> bool:
    return any(part in (".", "..") for part in path.replace("\\", "/").split("/"))


def check_url(url: str, what: str = "store URL") -> str:
    """`url` unchanged if confined; StoreError (one line, the accepted form) otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file", *BUCKET_SCHEMES):
        return url  # open_store names the unsupported scheme
    path = url if parsed.scheme == "" else parsed.path
    if parsed.scheme and (parsed.query or parsed.fragment or url.endswith(("?", "#"))):
        raise StoreError(f"{what} {url!r}: a '?query' or '#fragment' is not allowed (expected "
                         "SCHEME://bucket/prefix or file:///abs/path)")
    if _dot_segments(path):
        raise StoreError(f"{what} {url!r}: '.' and '..' segments are not allowed (name the directory or prefix "
                         "itself)")
    if parsed.scheme in BUCKET_SCHEMES and "//" in path.strip("/"):
        raise StoreError(f"{what} {url!r}: empty path segments ('//') are not allowed in a bucket prefix")
    return url


def check_dir(path: str | os.PathLike, what: str = "cache directory") -> str:
    """A local directory without '.' or '..' segments (it is used as given, never resolved upward)."""
    text = os.fspath(path)
    if not text or _dot_segments(text):
        raise StoreError(f"{what} {text!r}: expected a directory path without '.' or '..' segments")
    return text


CACHE_DIR_ENV = "RELAYTRAIN_CACHE_DIR"  # the deployment's dataset cache (an EFS mount, the function's /tmp)


def worker_cache_dir(asked: str | None) -> str | None:
    """The cache directory a worker uses for an event that asks for `asked`: the deployment's
    (RELAYTRAIN_CACHE_DIR) by default; a directory the event names only below the deployment's, or anywhere
    (without dot segments) where the deployment configured none (local runs)."""
    configured = os.environ.get(CACHE_DIR_ENV) or None
    if not asked:
        return configured
    check_dir(asked)
    if configured is not None and not within(asked, configured):
        raise StoreError(f"cache directory {asked!r} is outside this deployment's cache {configured!r} "
                         f"({CACHE_DIR_ENV}); leave cache_dir out of the event or name a directory below it")
    return asked


def within(url: str, prefix: str) -> bool:
    """True if `url` is `prefix` or below it, segment by segment (s3://b/raw does not contain s3://b/rawx)."""
    a, b = urlparse(url), urlparse(prefix)
    if (a.scheme or "file") != (b.scheme or "file") or a.netloc != b.netloc:
        return False
    inner = [p for p in (url if not a.scheme else a.path).split("/") if p]
    outer = [p for p in (prefix if not b.scheme else b.path).split("/") if p]
    return inner[: len(outer)] == outer


def _local(url: str) -> str | None:
    """The local path of a file:// or plain-path URL; None for a bucket URL."""
    parsed = urlparse(url)
    if parsed.scheme in BUCKET_SCHEMES:
        return None
    return parsed.path if parsed.scheme == "file" else url


def check_source(url: str, environ=None) -> str:
    """`url` if this deployment lets preprocess read it; StoreError naming the setting otherwise."""
    return _confined(url, SOURCE_PREFIX_ENV, "source", os.environ if environ is None else environ)


def check_run_store(url: str, environ=None) -> str:
    """`url` if this deployment lets preprocess read the run there (its pretrained base, for `--tokenizer
    pretrained`): below RELAYTRAIN_RUN_PREFIX when the deployment sets it; file:// as for sources."""
    return _confined(url, RUN_PREFIX_ENV, "run store", os.environ if environ is None else environ)


def _confined(url: str, prefix_env: str, what: str, env) -> str:
    check_url(url, f"{what} URL")
    prefixes = [p.strip() for p in env.get(prefix_env, "").split(",") if p.strip()]
    local = _local(url)
    if local is not None:
        if env.get(ALLOW_FILE_SOURCES_ENV) != "1":
            raise StoreError(f"{what} {url!r}: file sources are refused on this deployment (the operator allows them "
                             f"with {ALLOW_FILE_SOURCES_ENV}=1); use an s3:// or gs:// {what}")
        real = os.path.realpath(local)
        if any(real == v or real.startswith(v + "/") for v in VIRTUAL_FILESYSTEMS):
            raise StoreError(f"{what} {url!r}: {real} is a virtual filesystem, never a corpus")
        url = f"file://{real}"  # a symlink cannot lead outside the prefix
        prefixes = [f"file://{os.path.realpath(_local(p))}" if _local(p) is not None else p for p in prefixes]
    if prefixes and not any(within(url, p) for p in prefixes):
        raise StoreError(f"{what} {url!r} is outside this deployment's {what} prefix ({', '.join(prefixes)}; "
                         f"set by {prefix_env})")
    return url
