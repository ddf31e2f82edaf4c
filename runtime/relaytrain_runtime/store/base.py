"""The store interface: a flat key space of immutable-by-convention objects under one URL.

Every implementation guarantees:
- `write` is atomic: a reader sees the old object, the new one, or (for a new key) nothing,
  never a partial object.
- `create` is an atomic create-if-absent and returns False when the key already exists.
  It is the fencing primitive: of two workers racing to commit the same key, exactly one wins.
- keys are relative, '/'-separated, without '..' or a leading '/'.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from relaytrain_runtime import RelayError


class StoreError(RelayError):
    """The store cannot be used (missing, unreachable, unwritable)."""


class NotFound(StoreError):
    """The key does not exist."""


def check_key(key: str) -> str:
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise StoreError(f"invalid store key {key!r} (expected a relative 'a/b/c' path without '..')")
    return key


class Store(ABC):
    url: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Return the object's bytes; raise NotFound if absent."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Atomically create or replace the object."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Atomically create the object only if absent. True if created, False if it existed."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with `prefix` (a plain string prefix), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if absent."""

    def size(self, key: str) -> int:
        return len(self.read(key))

    def write_parts(self, key: str, parts) -> None:
        """Atomically write the concatenation of `parts` (bytes-like). Stores that can stream override this."""
        self.write(key, b"".join(parts))

    def read_buffer(self, key: str, on_chunk=None) -> bytearray:
        """The object's bytes in a writable buffer; `on_chunk(view)` is called with consecutive pieces as they
        arrive (e.g. to hash while reading). Stores that can read in place or in parts override this."""
        buf = bytearray(self.read(key))
        if on_chunk is not None:
            on_chunk(memoryview(buf))
        return buf

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Upload a local file (implementations use parallel parts for large files)."""
        with open(path, "rb") as fh:
            self.write(key, fh.read())

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """Download an object to a local file, atomically (temp file then rename)."""
        tmp = f"{path}.part-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(self.read(key))
        os.replace(tmp, path)

    def check(self) -> None:
        """Raise StoreError with a clear line if the store cannot be read and written."""
        return None

    def free_bytes(self) -> int | None:
        """Bytes the store can still take, where it knows (a local volume); None for object stores."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
