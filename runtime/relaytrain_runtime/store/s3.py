"""`s3://bucket/prefix` store (boto3).

- `write` is one PutObject: S3 makes an object visible only once it is complete.
- `create` is PutObject with `If-None-Match: *`: S3 refuses it with 412 when the key exists,
  so of two legs committing the same manifest key exactly one wins (the fence).
- Large objects (over PART_SIZE), whether bytes (`write`, `read`: the baton's checkpoints) or
  files (`put_file`, `get_file`), go through boto3's transfer manager: multipart upload and
  ranged parallel download, MAX_CONCURRENCY streams. A multipart object appears only at
  CompleteMultipartUpload, so an upload killed halfway leaves no object (only parts, which the
  bucket's abort-incomplete-multipart-upload lifecycle rule removes). A parallel read pins the
  object's ETag, so it never stitches ranges of two versions together.

The endpoint, region and credentials come from the standard AWS configuration chain
(`AWS_ENDPOINT_URL`, `AWS_REGION`, role credentials ...): there is no store-specific setting.
"""

from __future__ import annotations

import io
import os
import threading
import time

from relaytrain_runtime.store.base import NotFound, StoreError
from relaytrain_runtime.store.bucket import (
    MAX_CONCURRENCY,
    PART_SIZE,
    BucketStore,
    fill_in_parallel,
)


def _import_boto3():
    try:
        import boto3
        import botocore
    except ImportError:
        raise StoreError("s3:// stores need boto3: pip install 'relaytrain-runtime[s3]'") from None
    return boto3, botocore


_CLIENTS: dict = {}
_CLIENTS_LOCK = threading.Lock()


def _shared_client():
    """One S3 client per process and configuration: creating one costs ~0.5 s, and clients are
    thread-safe. Keyed by the environment that configures it, so a changed endpoint gets its own."""
    boto3, _ = _import_boto3()
    from botocore.config import Config

    key = tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
                                            "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"))
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = boto3.session.Session().client(
                "s3",
                config=Config(
                    retries={"mode": "standard", "max_attempts": 8},  # 503 SlowDown and resets are retried
                    max_pool_connections=MAX_CONCURRENCY + 4,
                    tcp_keepalive=True,
                ),
            )
        return _CLIENTS[key]


class S3Store(BucketStore):
    scheme = "s3"

    def __init__(self, url: str):
        self.bucket = self._bind(url)
        _, botocore = _import_boto3()
        from boto3.s3.transfer import TransferConfig

        self._errors = botocore.exceptions
        self._client = _shared_client()
        self._transfer = TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=MAX_CONCURRENCY,
            use_threads=True,
        )

    # keys -----------------------------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _code(self, exc) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _fail(self, exc, key: str | None, action: str):
        """Turn a botocore error into one StoreError line (NotFound for a missing key)."""
        where = self._where(key) if key else self.url
        if isinstance(exc, self._errors.NoCredentialsError):
            return StoreError(f"{action} {where}: no AWS credentials found "
                              "(set a role, AWS_PROFILE or AWS_ACCESS_KEY_ID)")
        if isinstance(exc, self._errors.ClientError):
            code = self._code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"{where} does not exist")
            if code == "NoSuchBucket":
                return StoreError(f"{action} {where}: bucket {self.bucket!r} does not exist")
            if code in ("AccessDenied", "403", "AllAccessDisabled"):
                return StoreError(f"{action} {where}: access denied; "
                                  "grant s3:GetObject/PutObject/ListBucket/DeleteObject on it")
            msg = exc.response.get("Error", {}).get("Message", "")
            return StoreError(f"{action} {where}: {code} {msg}".strip())
        if isinstance(exc, self._errors.BotoCoreError):
            return StoreError(f"{action} {where}: {exc}")
        return exc

    def _call(self, action: str, key: str | None, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (self._errors.ClientError, self._errors.BotoCoreError) as exc:
            raise self._fail(exc, key, action) from None

    # interface ------------------------------------------------------------------------
    def read_buffer(self, key: str, on_chunk=None) -> bytearray:
        """One GET for a small object; a large one in parallel ranges pinned to its ETag, handed to
        `on_chunk` in order as soon as each prefix has arrived (the baton hashes while reading)."""
        full = self._key(key)
        try:
            first = self._client.get_object(Bucket=self.bucket, Key=full, Range=f"bytes=0-{PART_SIZE - 1}")
        except self._errors.ClientError as exc:
            if self._code(exc) != "InvalidRange":  # S3 answers a range of an empty object with 416
                raise self._fail(exc, key, "read") from None
            first = self._call("read", key, self._client.get_object, Bucket=self.bucket, Key=full)
        except self._errors.BotoCoreError as exc:
            raise self._fail(exc, key, "read") from None
        head = first["Body"].read()
        total = int(first.get("ContentRange", "/0").rsplit("/", 1)[1] or len(head))
        buf = bytearray(total)
        buf[: len(head)] = head

        def fetch(start: int, end: int) -> bytes:
            resp = self._call("read", key, self._client.get_object, Bucket=self.bucket, Key=full,
                              Range=f"bytes={start}-{end - 1}", IfMatch=first["ETag"])
            return resp["Body"].read()

        fill_in_parallel(buf, len(head), fetch, PART_SIZE, on_chunk, self._where(key))
        return buf

    def write(self, key: str, data: bytes) -> None:
        if len(data) <= PART_SIZE:
            self._call("write", key, self._client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)
            return
        self._call("write", key, self._client.upload_fileobj, io.BytesIO(data), self.bucket, self._key(key),
                   Config=self._transfer)

    def create(self, key: str, data: bytes) -> bool:
        """Create-if-absent. True when the object now holds exactly `data` written by us.

        A 412 after a retried request can be our own first attempt that landed before the
        connection dropped; callers put a unique leg id into what they create, so equal bytes
        mean we won. 409 ConditionalRequestConflict (another conditional write in flight) is
        retried until one of the writers has finished.
        """
        full = self._key(key)
        for attempt in range(8):
            try:
                self._client.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*")
                return True
            except self._errors.ClientError as exc:
                code = self._code(exc)
                if code in ("PreconditionFailed", "412"):
                    try:
                        return self.read(key) == data
                    except NotFound:
                        return False
                if code in ("ConditionalRequestConflict", "409"):
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._fail(exc, key, "create") from None
            except self._errors.BotoCoreError as exc:
                raise self._fail(exc, key, "create") from None
        raise StoreError(f"create {self._where(key)}: conditional write kept conflicting; retry the leg")

    def exists(self, key: str) -> bool:
        try:
            self._call("exists", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        resp = self._call("size", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key))
        return int(resp["ContentLength"])

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        out = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix)
            for page in pages:
                out.extend(obj["Key"][len(base):] for obj in page.get("Contents", []))
        except (self._errors.ClientError, self._errors.BotoCoreError) as exc:
            raise self._fail(exc, None, "list") from None
        return sorted(out)

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def put_file(self, key: str, path) -> None:
        self._call(
            "upload", key, self._client.upload_file,
            Filename=os.fspath(path), Bucket=self.bucket, Key=self._key(key), Config=self._transfer,
        )

    def get_file(self, key: str, path) -> None:
        self._download_atomic(path, lambda tmp: self._call(
            "download", key, self._client.download_file,
            Bucket=self.bucket, Key=self._key(key), Filename=tmp, Config=self._transfer))

    def check(self) -> None:
        try:
            self._call("open", None, self._client.head_bucket, Bucket=self.bucket)
        except NotFound:
            raise StoreError(f"open {self.url}: bucket {self.bucket!r} does not exist") from None
