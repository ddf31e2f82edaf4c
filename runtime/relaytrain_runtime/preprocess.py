"""Preprocess: raw text objects under a prefix -> token shards and a dataset manifest, fanned out.

Three phases, each one handler invocation (op `preprocess`), so a Step Functions Distributed Map
or a Cloud Workflows parallel loop runs the middle one once per object:

    {"op": "preprocess", "phase": "plan", "store": DATASET_URL, "source": RAW_URL, "vocab_size": 4096}
        trains the byte-level BPE tokenizer on a sample of the sources (the first `sample_bytes` in
        sorted key order; written once with create(), so racing plans agree) and returns `items`:
        one `shard` event per source object, ready to be mapped.
    {"op": "preprocess", "phase": "shard", "store", "source", "key": "books/a.txt"}
        tokenizes one object and writes `data/parts/<id>.bin` (flat uint16/uint32 ids, the document
        followed by end-of-text) and its record `data/parts/<id>.json` (written last). Idempotent: a
        retried or duplicated invocation writes the same bytes.
    {"op": "preprocess", "phase": "manifest", "store"}
        collects the records into `data/manifest.json` (the format `data.open_dataset` reads). Every
        VAL_EVERY-th object by key hash is held out for validation (at least one).

The dataset URL is what a run spec's `dataset` names. Needs numpy and tokenizers, not torch.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from relaytrain_runtime import RelayError
from relaytrain_runtime.data import DATA_PREFIX, MANIFEST_KEY, SPECIAL_TOKENS, TOKENIZER_KEY, VAL_EVERY, encode_split
from relaytrain_runtime.contract.events import BadEvent, field
from relaytrain_runtime.store import NotFound, check_source, open_store

from relaytrain_runtime.contract.keys import PARTS_PREFIX  # noqa: E402
DEFAULT_SAMPLE_BYTES = 20_000_000


def part_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _split_of(key: str) -> str:
    return "val" if int(part_id(key), 16) % VAL_EVERY == 0 else "train"


def _text(source, key: str) -> str:
    raw = source.read(key)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RelayError(f"{source.url}/{key} is not UTF-8 text; preprocess takes text objects") from None


def plan(store_url: str, source_url: str, vocab_size: int, sample_bytes: int = DEFAULT_SAMPLE_BYTES,
         suffix: str = "") -> dict:
    from relaytrain_runtime.data import train_tokenizer

    store, source = open_store(store_url), open_store(source_url)
    keys = [k for k in source.list() if k.endswith(suffix)]
    if not keys:
        raise RelayError(f"no source objects under {source.url}" + (f" ending in {suffix!r}" if suffix else ""))
    if not store.exists(TOKENIZER_KEY):
        texts, total = [], 0
        for key in keys:
            if total >= sample_bytes:
                break
            texts.append(_text(source, key))
            total += len(texts[-1].encode())
        tok = train_tokenizer(texts, vocab_size)
        store.create(TOKENIZER_KEY, tok.to_str().encode())  # a racing plan may have won: same sample, same result
    items = [{"op": "preprocess", "phase": "shard", "store": store_url, "source": source_url, "key": k} for k in keys]
    return {"phase": "plan", "store": store.url, "count": len(items), "items": items}


def shard(store_url: str, source_url: str, key: str) -> dict:
    from tokenizers import Tokenizer

    store, source = open_store(store_url), open_store(source_url)
    try:
        tok = Tokenizer.from_str(store.read(TOKENIZER_KEY).decode())
    except NotFound:
        raise RelayError(f"{store.url}/{TOKENIZER_KEY} does not exist; run the 'plan' phase first") from None
    dtype = "uint16" if tok.get_vocab_size() <= 1 << 16 else "uint32"
    ids = encode_split(tok, [_text(source, key)]).astype(dtype)
    raw = ids.tobytes()
    pid = part_id(key)
    record = {"key": key, "name": f"{PARTS_PREFIX}{pid}.bin", "tokens": int(len(ids)), "dtype": dtype,
              "sha256": hashlib.sha256(raw).hexdigest(), "compression": None, "split": _split_of(key)}
    store.write(record["name"], raw)
    store.write(f"{PARTS_PREFIX}{pid}.json", json.dumps(record, sort_keys=True).encode())  # last: the part exists
    return {"phase": "shard", "key": key, "tokens": record["tokens"], "split": record["split"]}


def manifest(store_url: str) -> dict:
    from tokenizers import Tokenizer

    store = open_store(store_url)
    records = [json.loads(store.read(k)) for k in store.list(PARTS_PREFIX) if k.endswith(".json")]
    if not records:
        raise RelayError(f"{store.url} has no token parts under {PARTS_PREFIX}; run the 'shard' phase first")
    tok = Tokenizer.from_str(store.read(TOKENIZER_KEY).decode())
    records.sort(key=lambda r: r["key"])
    if not any(r["split"] == "val" for r in records) and len(records) > 1:
        min(records, key=lambda r: part_id(r["key"]))["split"] = "val"  # hold out at least one object
    counts = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for r in records:
        if r["split"] == "train":
            counts += np.bincount(np.frombuffer(store.read(r["name"]), dtype=r["dtype"]), minlength=len(counts))
    p = counts[counts > 0] / max(counts.sum(), 1)
    splits = {s: [{k: r[k] for k in ("name", "tokens", "sha256", "compression")} for r in records if r["split"] == s]
              for s in ("train", "val")}
    data = {"format": 1, "tokenizer": TOKENIZER_KEY, "vocab_size": tok.get_vocab_size(), "dtype": records[0]["dtype"],
            "special_tokens": {name: tok.token_to_id(name) for name in SPECIAL_TOKENS},
            "unigram_entropy_nats": float(-(p * np.log(p)).sum()),
            "corpus": {"name": "preprocessed", "objects": len(records)}, "splits": splits}
    store.write(MANIFEST_KEY, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    return {"phase": "manifest", "store": store.url, "objects": len(records),
            "tokens": {s: sum(r["tokens"] for r in v) for s, v in splits.items()}}


def preprocess_op(event: dict, deadline: float) -> dict:
    if "source" in event:  # only where the deployment's configuration allows (store/confine.py)
        check_source(field(event, "source", str))
    phase = field(event, "phase", str, "shard" if "key" in event else None, required="key" not in event)
    if phase == "plan":
        return plan(event["store"], field(event, "source", str, required=True),
                    field(event, "vocab_size", int, 4096, minimum=len(SPECIAL_TOKENS) + 256),
                    field(event, "sample_bytes", int, DEFAULT_SAMPLE_BYTES, minimum=1),
                    field(event, "suffix", str, ""))
    if phase == "shard":
        return shard(event["store"], field(event, "source", str, required=True), field(event, "key", str, required=True))
    if phase == "manifest":
        return manifest(event["store"])
    raise BadEvent(f"event field 'phase' must be plan, shard or manifest, got {phase!r}")
