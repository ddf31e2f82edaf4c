"""`gs://bucket/prefix` store (google-cloud-storage, JSON API).

- `write` is one upload: GCS makes an object visible only once the upload is finalised.
- `create` uploads with `ifGenerationMatch=0`: GCS refuses it with 412 when the name exists,
  so of two legs committing the same manifest key exactly one wins (the fence). Keys are
  unique per step: no object is rewritten in the hot path (GCS allows ~1 write/s per name).
- A large object (over PART_SIZE), bytes (`write`: the baton's checkpoints) or a file
  (`put_file`), is a parallel composite upload: parts go up concurrently as temporary objects
  under `.parts/`, one `compose` makes the final object appear at once, and the parts are
  deleted. An upload killed halfway leaves no object at the key (only orphan parts under
  `.parts/`, which `list` ignores and a bucket lifecycle rule on `.parts/` removes).
- A large object is read (`read`, `get_file`) in concurrent byte ranges pinned to one
  generation, so a read never stitches two versions together.

Endpoint and credentials come from the standard configuration: Application Default
Credentials, and `STORAGE_EMULATOR_HOST` for an emulator. No store-specific setting.
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

from relaytrain_runtime.store.base import NotFound, StoreError
from relaytrain_runtime.store.bucket import MAX_CONCURRENCY, PART_SIZE, BucketStore, fill_in_parallel

MAX_PARTS = 32  # GCS composes at most 32 source objects in one request
PARTS_PREFIX = ".parts/"


def _import_gcs():
    try:
        warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")
        from google.api_core import exceptions
        from google.cloud import storage
    except ImportError:
        raise StoreError("gs:// stores need google-cloud-storage: pip install 'relaytrain-runtime[gcs]'") from None
    return storage, exceptions


_CLIENTS: dict = {}
_CLIENTS_LOCK = threading.Lock()


def _shared_client(storage):
    """One client per process and configuration (credential discovery is slow; clients are
    thread-safe for these calls), keyed by the environment that configures it."""
    key = tuple(os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
                                            "GOOGLE_APPLICATION_CREDENTIALS"))
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = storage.Client()
        return _CLIENTS[key]


class GCSStore(BucketStore):
    scheme = "gs"

    def __init__(self, url: str):
        bucket = self._bind(url)
        storage, self._exc = _import_gcs()
        try:
            self._client = _shared_client(storage)
        except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
            raise StoreError(f"open {self.url}: no Google Cloud credentials ({type(exc).__name__}); "
                             "run on a service account or set GOOGLE_APPLICATION_CREDENTIALS") from None
        self._bucket = self._client.bucket(bucket)

    # keys -----------------------------------------------------------------------------
    def _blob(self, key: str):
        return self._bucket.blob(self._key(key))

    def _fail(self, exc, key: str | None, action: str):
        where = f"{self.url}/{key}" if key else self.url
        if isinstance(exc, self._exc.NotFound):
            if "bucket" in str(exc).lower() and key is None:
                return StoreError(f"{action} {where}: bucket {self._bucket.name!r} does not exist")
            return NotFound(f"{where} does not exist")
        if isinstance(exc, self._exc.Forbidden):
            return StoreError(f"{action} {where}: access denied; grant roles/storage.objectUser on the bucket")
        if isinstance(exc, self._exc.GoogleAPIError):
            return StoreError(f"{action} {where}: {type(exc).__name__}: {getattr(exc, 'message', exc)}")
        return exc

    def _call(self, action: str, key: str | None, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._exc.GoogleAPIError as exc:
            raise self._fail(exc, key, action) from None

    # interface ------------------------------------------------------------------------
    def read_buffer(self, key: str, on_chunk=None) -> bytearray:
        """A small object in one download; a large one in parallel ranges pinned to its generation,
        handed to `on_chunk` in order as soon as each prefix has arrived."""
        blob = self._call("read", key, self._bucket.get_blob, self._key(key))
        if blob is None:
            raise NotFound(f"{self.url}/{key} does not exist")
        buf = bytearray(blob.size)
        head = min(blob.size, PART_SIZE)
        if head:
            buf[:head] = self._call("read", key, blob.download_as_bytes, start=0, end=head - 1,
                                    if_generation_match=blob.generation, checksum=None)

        def fetch(start: int, end: int) -> bytes:
            return self._call("read", key, blob.download_as_bytes, start=start, end=end - 1,
                              if_generation_match=blob.generation, checksum=None)

        fill_in_parallel(buf, head, fetch, PART_SIZE, on_chunk, f"{self.url}/{key}")
        return buf

    def write(self, key: str, data: bytes) -> None:
        if len(data) <= PART_SIZE:
            self._call("write", key, self._blob(key).upload_from_string, data, content_type="application/octet-stream")
            return
        view = memoryview(data)
        self._compose_upload(key, len(data), lambda start, n: view[start : start + n].tobytes())

    def create(self, key: str, data: bytes) -> bool:
        """Create-if-absent. True when the object now holds exactly `data` written by us.

        The client retries a conditional upload on transient errors; a 412 on a retry can be our
        own first attempt that landed. Callers put a unique leg id into what they create, so
        equal bytes mean we won.
        """
        try:
            self._blob(key).upload_from_string(data, content_type="application/octet-stream", if_generation_match=0)
            return True
        except self._exc.PreconditionFailed:
            try:
                return self.read(key) == data
            except NotFound:
                return False
        except self._exc.GoogleAPIError as exc:
            raise self._fail(exc, key, "create") from None

    def exists(self, key: str) -> bool:
        return self._call("exists", key, self._blob(key).exists)

    def size(self, key: str) -> int:
        blob = self._call("size", key, self._bucket.get_blob, self._key(key))
        if blob is None:
            raise NotFound(f"{self.url}/{key} does not exist")
        return int(blob.size)

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            names = [b.name[len(base):] for b in self._client.list_blobs(self._bucket, prefix=base + prefix)]
        except self._exc.GoogleAPIError as exc:
            raise self._fail(exc, None, "list") from None
        return sorted(n for n in names if not n.startswith(PARTS_PREFIX))

    def delete(self, key: str) -> None:
        try:
            self._blob(key).delete()
        except self._exc.NotFound:
            pass
        except self._exc.GoogleAPIError as exc:
            raise self._fail(exc, key, "delete") from None

    def put_file(self, key: str, path) -> None:
        size = os.path.getsize(path)
        if size <= PART_SIZE:
            self._call("upload", key, self._blob(key).upload_from_filename, os.fspath(path),
                       content_type="application/octet-stream")
            return

        def read_part(start: int, n: int) -> bytes:
            with open(path, "rb") as fh:
                fh.seek(start)
                return fh.read(n)

        self._compose_upload(key, size, read_part)

    @staticmethod
    def _parallel(fn, items) -> None:
        items = list(items)
        with ThreadPoolExecutor(max(1, min(MAX_CONCURRENCY, len(items)))) as pool:
            list(pool.map(fn, items))

    def _compose_upload(self, key: str, size: int, read_part) -> None:
        """Upload `size` bytes as concurrent parts (`read_part(start, n) -> bytes`), then compose them."""
        part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        upload_id = uuid.uuid4().hex
        starts = list(range(0, size, part_size))
        parts = [self._bucket.blob(self._key(f"{PARTS_PREFIX}{upload_id}/{i:04d}")) for i in range(len(starts))]

        def upload(i: int) -> None:
            parts[i].upload_from_string(read_part(starts[i], part_size), content_type="application/octet-stream")

        try:
            self._parallel(upload, range(len(parts)))
            self._blob(key).compose(parts)
        except self._exc.GoogleAPIError as exc:
            raise self._fail(exc, key, "upload") from None
        finally:
            for part in parts:
                try:
                    part.delete()
                except self._exc.GoogleAPIError:
                    pass  # an orphan part: ignored by list(), removed by the bucket's lifecycle rule

    def get_file(self, key: str, path) -> None:
        from google.cloud.storage import transfer_manager

        blob = self._call("download", key, self._bucket.get_blob, self._key(key))
        if blob is None:
            raise NotFound(f"{self.url}/{key} does not exist")

        def download(tmp: str) -> None:
            if blob.size <= PART_SIZE:
                self._call("download", key, blob.download_to_filename, tmp)
            else:
                self._call("download", key, transfer_manager.download_chunks_concurrently, blob, tmp,
                           chunk_size=PART_SIZE, max_workers=MAX_CONCURRENCY, worker_type=transfer_manager.THREAD)

        self._download_atomic(path, download)

    def check(self) -> None:
        try:
            if not self._bucket.exists():
                raise StoreError(f"open {self.url}: bucket {self._bucket.name!r} does not exist")
        except self._exc.GoogleAPIError as exc:
            raise self._fail(exc, None, "open") from None
