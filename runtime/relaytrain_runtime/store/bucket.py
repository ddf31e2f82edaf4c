"""What the object-store backends (`s3://bucket/prefix`, `gs://bucket/prefix`) share: the URL and key
mapping, the transfer sizes, parallel ranged reads, and atomic downloads to a local file."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from relaytrain_runtime.store.base import Store, StoreError, check_key

MiB = 1024 * 1024
# parts of an upload / ranges of a parallel download; RELAYTRAIN_PART_MB tunes it for your network
PART_SIZE = int(os.environ.get("RELAYTRAIN_PART_MB", "16")) * MiB
MAX_CONCURRENCY = 16  # parallel streams per transfer


def fill_in_parallel(buf: bytearray, filled: int, fetch, part_size: int, on_chunk=None, where: str = "") -> None:
    """Fill `buf[filled:]` with `fetch(start, end) -> bytes` over `part_size` ranges (each backend passes its
    own: their minimum part sizes differ), MAX_CONCURRENCY at a time. `on_chunk(view)` sees consecutive pieces
    of `buf`, in order, as soon as each prefix is complete."""
    view = memoryview(buf)
    if on_chunk is not None and filled:
        on_chunk(view[:filled])

    def task(start: int) -> tuple[int, int]:
        end = min(start + part_size, len(buf))
        data = fetch(start, end)
        if len(data) != end - start:
            raise StoreError(f"read {where}: got {len(data)} bytes for range {start}-{end - 1}; the object changed")
        view[start:end] = data
        return start, end

    with ThreadPoolExecutor(MAX_CONCURRENCY) as pool:
        for start, end in pool.map(task, range(filled, len(buf), part_size)):  # in order of start
            if on_chunk is not None:
                on_chunk(view[start:end])


class BucketStore(Store):
    """A store rooted at SCHEME://bucket/prefix. Subclasses set `scheme` and call `_bind(url)`."""

    scheme = ""

    def _bind(self, url: str) -> str:
        """Parse the URL into `url` and `prefix`; return the bucket name."""
        parsed = urlparse(url)
        if parsed.scheme != self.scheme or not parsed.netloc:
            raise StoreError(f"store URL {url!r}: expected {self.scheme}://bucket/prefix")
        self.url = url.rstrip("/")
        self.prefix = parsed.path.strip("/")
        return parsed.netloc

    def _key(self, key: str) -> str:
        """The object name of a store key."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes:
        return bytes(self.read_buffer(key))

    def _download_atomic(self, path, download) -> None:
        """`download(tmp)` into a temp name unique per writer (threads, shared disks), then rename."""
        tmp = f"{os.fspath(path)}.part-{uuid.uuid4().hex}"
        try:
            download(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
