"""Stores addressed by URL: file:// (or a plain path), s3://bucket/prefix, gs://bucket/prefix."""

from __future__ import annotations

from urllib.parse import urlparse

from relaytrain_runtime.store.base import NotFound, Store, StoreError
from relaytrain_runtime.store.confine import check_run_store, check_source, check_url

__all__ = ["NotFound", "Store", "StoreError", "check_run_store", "check_source", "check_url", "open_store"]


def open_store(url: str) -> Store:
    if not url:
        raise StoreError("no store URL given (expected file:///path, s3://bucket/prefix or gs://bucket/prefix)")
    parsed = urlparse(check_url(url))
    scheme = parsed.scheme
    if scheme in ("", "file"):
        from relaytrain_runtime.store.file import FileStore

        path = parsed.path if scheme == "file" else url
        if scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise StoreError(f"store URL {url!r}: file URLs take an absolute path (file:///abs/path)")
        return FileStore(path)
    if scheme == "s3":
        from relaytrain_runtime.store.s3 import S3Store

        return S3Store(url)
    if scheme == "gs":
        from relaytrain_runtime.store.gcs import GCSStore

        return GCSStore(url)
    raise StoreError(f"store URL {url!r}: unsupported scheme {scheme!r} (expected file://, s3:// or gs://)")
