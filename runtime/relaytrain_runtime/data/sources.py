"""Source objects -> documents. A source is a folder or object prefix (or one object) read through a Store.

Formats (`--format`, or detected from the keys: any `.arrow` -> hf, else any `.parquet` -> parquet,
else any `.jsonl`/`.jsonl.zst` -> jsonl, else text):
- text:    every object is one UTF-8 document;
- jsonl:   `.jsonl` or `.jsonl.zst`, one JSON object per line, one document per record;
- parquet: `.parquet` files read with pyarrow, one document per row;
- hf:      the `.arrow` files of a Hugging Face dataset saved with `save_to_disk`, read with
           `datasets.Dataset.from_file`, one document per row.

A record becomes a document through its field: `--field NAME` (a string), or, when no field is
named, `text`, else `messages` (a chat), else `prompt` + `response` (an instruction pair).
A document is a string (plain text) or a list of {role, content} messages (instruction data).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator

from relaytrain_runtime.contract.prepare import FORMATS
from relaytrain_runtime.data.build import DataError
from relaytrain_runtime.data.tokens import check_messages
from relaytrain_runtime.store import Store, open_store

SUFFIXES = {"jsonl": (".jsonl", ".jsonl.zst"), "parquet": (".parquet",), "hf": (".arrow",)}
BATCH_ROWS = 1024


def open_source(url: str) -> tuple[Store, list[str]]:
    """The store and the object keys of a source URL: every object under a prefix, or the one object it names."""
    store = open_store(url)
    keys = store.list()
    if keys:
        return store, keys
    head, _, name = url.rstrip("/").rpartition("/")
    if head and name:
        parent = open_store(head)
        if parent.exists(name):
            return parent, [name]
    return store, []


def detect(keys: list[str]) -> str:
    for fmt in ("hf", "parquet", "jsonl"):
        if any(k.endswith(SUFFIXES[fmt]) for k in keys):
            return fmt
    return "text"


def select(keys: list[str], fmt: str, suffix: str = "") -> list[str]:
    """The keys of `fmt` (text takes every key), ending in `suffix` if one is given."""
    return [k for k in keys if (fmt == "text" or k.endswith(SUFFIXES[fmt])) and k.endswith(suffix)]


# ----------------------------------------------------------------------------------------- records


def records(store: Store, key: str, fmt: str, field: str | None) -> Iterator[tuple[str, object]]:
    """(where, document) for every record of one object, `where` naming the object and record."""
    where = f"{store.url}/{key}"
    if fmt == "text":
        yield where, _utf8(store.read(key), where)
    elif fmt == "jsonl":
        yield from _jsonl(store.read(key), key.endswith(".zst"), where, field)
    elif fmt == "parquet":
        yield from _parquet(store.read(key), where, field)
    elif fmt == "hf":
        yield from _hf(store.read(key), where, field)
    else:
        raise DataError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); "
                        "text sources must be UTF-8") from None


def _jsonl(raw: bytes, compressed: bool, where: str, field: str | None) -> Iterator[tuple[str, object]]:
    if compressed:
        import zstandard

        try:
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
        except zstandard.ZstdError as exc:
            raise DataError(f"{where}: not a zstd stream ({exc})") from None
    for n, line in enumerate(_utf8(raw, where).splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where} line {n}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{at}: not a JSON record ({exc.args[0][:80]})") from None
        if not isinstance(record, dict):
            raise DataError(f"{at}: expected a JSON object per line, got {type(record).__name__}")
        yield at, document(record, field, at)


def document(record: dict, field: str | None, where: str):
    """A record's document: the named string field, or text / messages / prompt+response."""
    if field is not None:
        if field not in record:
            raise DataError(f"{where}: no field {field!r} (fields: {', '.join(sorted(record)) or 'none'})")
        return _string(record[field], field, where)
    if "text" in record:
        return _string(record["text"], "text", where)
    if "messages" in record:
        return check_messages(record["messages"], where)
    if "prompt" in record and "response" in record:
        return [{"role": "user", "content": _string(record["prompt"], "prompt", where)},
                {"role": "assistant", "content": _string(record["response"], "response", where)}]
    raise DataError(f"{where}: no 'text', 'messages' or 'prompt'+'response' field (fields: "
                    f"{', '.join(sorted(record)) or 'none'}); name the text field with --field")


def _string(value, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} is {type(value).__name__}, expected a string")
    return value


def _columns(schema, field: str | None, where: str) -> list[str]:
    """The columns a table's documents come from, with the text column's type checked."""
    import pyarrow as pa

    names = list(schema.names)
    if field is not None or "text" in names:
        name = field or "text"
        if name not in names:
            raise DataError(f"{where}: no column {name!r} (columns: {', '.join(names)})")
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(f"{where}: column {name!r} is {kind}, expected a string column (name one with --field)")
        return [name]
    if "messages" in names:
        return ["messages"]
    if "prompt" in names and "response" in names:
        return ["prompt", "response"]
    raise DataError(f"{where}: no 'text', 'messages' or 'prompt'+'response' column (columns: {', '.join(names)}); "
                    "name the text column with --field")


def _rows(batches, columns: list[str], field: str | None, where: str) -> Iterator[tuple[str, object]]:
    row = 0
    for b in batches:
        data = b.to_pydict() if hasattr(b, "to_pydict") else b
        for values in zip(*(data[c] for c in columns), strict=True):
            at = f"{where} row {row}"
            yield at, document(dict(zip(columns, values, strict=True)), field, at)
            row += 1


def _parquet(raw: bytes, where: str, field: str | None) -> Iterator[tuple[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{where}: not a Parquet file ({str(exc)[:120]})") from None
    columns = _columns(pf.schema_arrow, field, where)
    yield from _rows(pf.iter_batches(batch_size=BATCH_ROWS, columns=columns), columns, field, where)


def _hf(raw: bytes, where: str, field: str | None) -> Iterator[tuple[str, object]]:
    import datasets
    import pyarrow as pa

    fd, path = tempfile.mkstemp(suffix=".arrow")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        try:
            ds = datasets.Dataset.from_file(path, in_memory=True)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"{where}: not an Arrow file of a saved Hugging Face dataset ({str(exc)[:120]})") from None
        columns = _columns(ds.data.schema, field, where)
        yield from _rows(ds.select_columns(columns).iter(batch_size=BATCH_ROWS), columns, field, where)
    finally:
        os.unlink(path)
