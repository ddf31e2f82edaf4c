"""A local, content-addressed cache of store objects (dataset shards, tokenizer).

Objects are named by their sha256 under the cache directory (an EFS mount shared by many
Lambdas, or a VM's local disk). A download goes to a private temp file, is verified against the
expected sha256 and size, and only then renamed into place, so a reader sees a complete,
verified file or none; concurrent readers of one object are serialised by an advisory lock on
the object (flock, which EFS honours) so it is downloaded once. A file whose name is its sha256
was verified before it got that name; `fetch(..., verify=True)` re-hashes on every hit.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from relaytrain_runtime.store.base import Store, StoreError
from relaytrain_runtime.store.confine import check_dir

CHUNK = 4 * 1024 * 1024


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class ShardCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(check_dir(root))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cache directory {self.root}: cannot be created ({exc.strerror})") from None

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise StoreError(f"cache: {sha256!r} is not a sha256 hex digest (64 lowercase hex characters)")
        return self.root / sha256[:2] / sha256

    def fetch(self, store: Store, key: str, sha256: str, size: int | None = None, verify: bool = False) -> Path:
        """Return a local path holding the object `key` whose content hashes to `sha256`."""
        final = self.path(sha256)
        if self._good(final, sha256, size, verify):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{final}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one downloader per object; others wait, then hit
            try:
                if self._good(final, sha256, size, verify):
                    return final
                fd, tmp = tempfile.mkstemp(prefix=f".{sha256[:16]}.", suffix=".tmp", dir=final.parent)
                os.close(fd)
                try:
                    store.get_file(key, tmp)
                    got = sha256_file(tmp)
                    if got != sha256:
                        raise StoreError(f"cache: {store.url}/{key} has sha256 {got[:12]}..., "
                                         f"expected {sha256[:12]}...; the object is corrupt or the manifest is stale")
                    os.replace(tmp, final)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return final

    @staticmethod
    def _good(path: Path, sha256: str, size: int | None, verify: bool) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if size is not None and st.st_size != size:
            path.unlink(missing_ok=True)  # truncated by something outside the cache: refetch
            return False
        if verify and sha256_file(path) != sha256:
            path.unlink(missing_ok=True)
            return False
        return True
