"""`file://` store: a directory. Atomic writes through a temp file, fsync and rename;
create-if-absent through link(2), which fails atomically when the name exists."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from relaytrain_runtime.store.base import NotFound, Store, StoreError, check_key


class FileStore(Store):
    def __init__(self, root: str | os.PathLike, url: str | None = None):
        self.root = Path(root).absolute()
        self.url = url or f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextmanager
    def _writing(self, key: str, action: str = "write"):
        """An OSError of a write (full disk, read-only or unwritable volume) as one StoreError line."""
        try:
            yield
        except FileExistsError:
            raise
        except OSError as exc:
            name = errno.errorcode.get(exc.errno, "OSError")
            raise StoreError(f"{action} {self.url}/{key}: {exc.strerror or exc} ({name}); free space on the volume "
                             "or make the store writable") from None

    def _tmp(self, final: Path, data) -> str:
        """Write `data` (bytes-like, or a list of parts written in order) to a synced temp file beside `final`."""
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:
                for part in data if isinstance(data, list) else [data]:
                    view = memoryview(part)
                    while view:
                        view = view[fh.write(view):]
                os.fsync(fh.fileno())
        except BaseException:
            _unlink(tmp)
            raise
        return tmp

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.url}/{key} does not exist") from None

    def write(self, key: str, data: bytes) -> None:
        final = self._path(key)
        with self._writing(key):
            os.replace(self._tmp(final, data), final)
        _fsync_dir(final.parent)

    def write_parts(self, key: str, parts) -> None:
        final = self._path(key)
        with self._writing(key):
            os.replace(self._tmp(final, list(parts)), final)
        _fsync_dir(final.parent)

    def read_buffer(self, key: str, on_chunk=None, chunk_bytes: int = 16 << 20) -> bytearray:
        try:
            with open(self._path(key), "rb", buffering=0) as fh:
                size = os.fstat(fh.fileno()).st_size
                buf = bytearray(size)
                view, got = memoryview(buf), 0
                while got < size:
                    n = fh.readinto(view[got:got + chunk_bytes])
                    if not n:
                        break
                    if on_chunk is not None:
                        on_chunk(view[got:got + n])
                    got += n
        except FileNotFoundError:
            raise NotFound(f"{self.url}/{key} does not exist") from None
        return buf if got == size else buf[:got]

    def create(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        with self._writing(key, "create"):
            tmp = self._tmp(final, data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            finally:
                _unlink(tmp)
        _fsync_dir(final.parent)
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an in-flight or abandoned atomic write, never an object
                key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    def delete(self, key: str) -> None:
        with self._writing(key, "delete"):
            _unlink(self._path(key))

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"{self.url}/{key} does not exist") from None

    def put_file(self, key: str, path) -> None:
        final = self._path(key)
        with self._writing(key, "upload"):
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            except BaseException:
                _unlink(tmp)
                raise

    def get_file(self, key: str, path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotFound(f"{self.url}/{key} does not exist")
        tmp = f"{path}.part-{os.getpid()}"
        shutil.copyfile(src, tmp)
        os.replace(tmp, path)

    def free_bytes(self) -> int | None:
        path = self.root
        while not path.exists() and path != path.parent:
            path = path.parent
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {self.url} cannot be created ({exc.strerror}); "
                             "choose a writable directory") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"store {self.url} is not writable; choose a writable directory or fix its permissions")


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
