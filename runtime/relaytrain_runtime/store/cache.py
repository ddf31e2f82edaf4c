"""A local, content-addressed cache of store objects (dataset shards, tokenizer).

Objects are named by their sha256 under the cache directory (an EFS mount shared by many
Lambdas, or a VM's local disk). A download goes to a private temp file, is verified against the
expected sha256 and size, and only then renamed into place, so a reader sees a complete,
verified file or none; concurrent readers of one object are serialised by an advisory lock on
the object (flock, which EFS honours) so it is downloaded once. A file whose name is its sha256
was verified before it got that name; `fetch(..., verify=True)` re-hashes on every hit.

Budget: a cache with `budget_bytes` evicts least-recently-used objects (a hit or a download marks an
object used: its mtime) before a download would take it over the budget, and after one of unknown size.
An object being read is never evicted: a reader `hold()`s it (a shared flock on `<sha256>.hold.lock`) for as
long as it has the file open or mapped, and eviction removes only objects whose `.hold.lock` it can lock
exclusively without waiting (on EFS, across every Lambda sharing the mount). Files beside an object
(`<sha256>.raw`, a decompressed copy) count toward the budget and go with it. `cache_budget(root)` is
the deployment's budget: RELAYTRAIN_CACHE_BUDGET_MB when set (the stacks' configuration), else the
cache's filesystem (Lambda's ephemeral /tmp, sized by the function's ephemeral storage; a node's disk)
less a margin, counting what is already cached plus what is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from relaytrain_runtime.store.base import Store, StoreError
from relaytrain_runtime.store.confine import check_dir

CHUNK = 4 * 1024 * 1024
BUDGET_ENV = "RELAYTRAIN_CACHE_BUDGET_MB"
MARGIN_BYTES, MARGIN_SHARE = 128 << 20, 0.10  # kept free on the cache's filesystem: the larger of the two
OBJECT_RE = re.compile(r"[0-9a-f]{64}")


def cache_budget(root: str | os.PathLike) -> int:
    """Bytes the cache at `root` may hold: RELAYTRAIN_CACHE_BUDGET_MB, else what is cached there plus the free
    space of its filesystem, less max(128 MiB, 10 % of the filesystem)."""
    configured = os.environ.get(BUDGET_ENV)
    if configured:
        try:
            mb = float(configured)
        except ValueError:
            mb = -1
        if not mb > 0:
            raise StoreError(f"{BUDGET_ENV}={configured!r}: expected a positive number of MiB")
        return int(mb * (1 << 20))
    disk = shutil.disk_usage(root)
    cached = sum(size for _, size, _ in _objects(Path(root)))
    return max(0, cached + disk.free - max(MARGIN_BYTES, int(MARGIN_SHARE * disk.total)))


def _objects(root: Path) -> list[tuple[float, int, Path]]:
    """(last used, bytes with its siblings, path) of every object in the cache."""
    out = []
    for sub in root.glob("[0-9a-f][0-9a-f]"):
        for path in sub.iterdir():
            if not OBJECT_RE.fullmatch(path.name):
                continue
            try:
                used = path.stat().st_mtime
                size = sum(p.stat().st_size for p in (path, Path(f"{path}.raw")) if p.exists())
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            out.append((used, size, path))
    return out


class Hold:
    """A reader's claim on a cached object (a shared flock on `<sha256>.hold.lock`): not evicted until released."""

    def __init__(self, path: Path):
        self._fd = os.open(f"{path}.hold.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class ShardCache:
    def __init__(self, root: str | os.PathLike, budget_bytes: int | None = None):
        """budget_bytes: None = unbounded (cache_budget(root) is the deployment's)."""
        self.root = Path(check_dir(root))
        self.budget = budget_bytes
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cache directory {self.root}: cannot be created ({exc.strerror})") from None

    @classmethod
    def for_deployment(cls, root: str | os.PathLike) -> ShardCache:
        """The cache at `root` with the deployment's budget (cache_budget)."""
        cache = cls(root)
        cache.budget = cache_budget(cache.root)
        return cache

    def hold(self, sha256: str) -> Hold:
        """Claim the object (before fetching it): it is not evicted until the hold is released."""
        path = self.path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        return Hold(path)

    def cached_bytes(self) -> int:
        return sum(size for _, size, _ in _objects(self.root))

    def make_room(self, need: int, keep: Path | None = None) -> None:
        """Evict least-recently-used, unheld objects (never `keep`) until `need` more bytes fit the budget."""
        if self.budget is None:
            return
        objects = sorted(_objects(self.root))
        total = sum(size for _, size, _ in objects)
        for _, size, path in objects:
            if total + need <= self.budget:
                return
            if path != keep and self._evict(path):
                total -= size

    @staticmethod
    def _evict(path: Path) -> bool:
        """Remove the object and its siblings if nobody holds it (no waiting)."""
        try:
            fd = os.open(f"{path}.hold.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            for victim in (Path(f"{path}.raw"), path):
                victim.unlink(missing_ok=True)
        finally:
            os.close(fd)
        return True

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise StoreError(f"cache: {sha256!r} is not a sha256 hex digest (64 lowercase hex characters)")
        return self.root / sha256[:2] / sha256

    def fetch(self, store: Store, key: str, sha256: str, size: int | None = None, verify: bool = False) -> Path:
        """Return a local path holding the object `key` whose content hashes to `sha256`."""
        final = self.path(sha256)
        if self._good(final, sha256, size, verify):
            with contextlib.suppress(OSError):  # used now (LRU order); a read-only cache just keeps its order
                os.utime(final)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        self.make_room(size or 0, keep=final)
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
        if size is None:  # its size was unknown before the download
            self.make_room(0, keep=final)
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
