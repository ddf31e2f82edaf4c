"""The Cloud Functions source archive: a deterministic zip of the runtime, named by content hash.

Gen2 functions redeploy only when the source object's name changes, so the object is named
`relaytrain-<sha256[:16]>.zip`: a code change gives a new name (a redeploy), an unchanged tree
gives the same bytes and name (no diff, stable previews). Built without importing torch: only
the runtime's `.py` files are read.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import tempfile
import zipfile
from dataclasses import dataclass

import relaytrain_runtime

ENTRY_POINT = "relaytrain_http"
PYTHON_RUNTIME = "python311"
# torch from the CPU wheel index: Cloud Functions have no GPU, and the default wheel is CUDA (GBs).
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FUNCTION_REQUIREMENTS = (
    f"--extra-index-url {CPU_INDEX}",
    "torch==2.13.0+cpu",
    "numpy==2.4.6",
    "safetensors==0.8.0",
    "tokenizers==0.23.3",
    "transformers==5.24.0",  # the model classes
    "peft==0.21.2",  # LoRA
    "google-cloud-storage==3.17.1",
    "functions-framework==3.10.2",
)
# GPU nodes take torch from PyPI, whose Linux wheel is the CUDA build (a venv with the image's
# site packages skips it when the image already has this version).
NODE_REQUIREMENTS = ("torch==2.13.0", "numpy==2.4.6", "safetensors==0.8.0", "tokenizers==0.23.3",
                     "transformers==5.24.0", "peft==0.21.2", "google-cloud-storage==3.17.1")
MAIN_PY = f'"""Cloud Functions entry point (functions-framework target `{ENTRY_POINT}`)."""\n' \
          f"from relaytrain_runtime.handlers.gcf import {ENTRY_POINT}  # noqa: F401\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same tree, same bytes


@dataclass(frozen=True)
class SourceArchive:
    path: pathlib.Path  # the zip on local disk (a Pulumi FileAsset)
    sha256: str
    files: tuple[str, ...]  # member names, sorted

    @property
    def object_name(self) -> str:
        return f"source/relaytrain-{self.sha256[:16]}.zip"


def runtime_files(package_dir: pathlib.Path | None = None) -> dict[str, bytes]:
    """Every `.py` file of the runtime package, keyed by its path in the archive."""
    root = package_dir or pathlib.Path(relaytrain_runtime.__file__).resolve().parent
    files = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or rel.parts[0] == "tests":
            continue
        files[f"relaytrain_runtime/{rel.as_posix()}"] = path.read_bytes()
    return files


def archive_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name], compresslevel=9)
    return buf.getvalue()


def build_source_archive(out_dir: pathlib.Path | None = None, package_dir: pathlib.Path | None = None) -> SourceArchive:
    """Write the archive (runtime + main.py + requirements files) once per content hash."""
    files = runtime_files(package_dir)
    files["main.py"] = MAIN_PY.encode()
    files["requirements.txt"] = ("\n".join(FUNCTION_REQUIREMENTS) + "\n").encode()
    files["requirements-node.txt"] = ("\n".join(NODE_REQUIREMENTS) + "\n").encode()
    data = archive_bytes(files)
    digest = hashlib.sha256(data).hexdigest()
    out = out_dir or pathlib.Path(tempfile.gettempdir()) / "relaytrain-gcp-source"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"relaytrain-{digest[:16]}.zip"
    if not path.exists():
        tmp = path.with_suffix(f".{digest[:8]}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return SourceArchive(path=path, sha256=digest, files=tuple(sorted(files)))
