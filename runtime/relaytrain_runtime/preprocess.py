"""Preprocess: source objects under a prefix -> token shards and a dataset manifest, fanned out.

Three phases, each one handler invocation (op `preprocess`), so a Step Functions Distributed Map
or a Cloud Workflows parallel loop runs the middle one once per object:

    {"op": "preprocess", "phase": "plan", "store": DATASET_URL, "source": RAW_URL, "vocab_size"?: 4096,
     "format"?: text|jsonl|parquet|hf, "field"?: NAME, "tokenizer"?: bpe|pretrained|URL, "val_fraction"?: 0.01,
     "val_source"?: URL, "suffix"?: ".txt", "sample_bytes"?: N, "run_store"?: RUN_URL}
        fixes the settings (`data/prepare.json`, created once, so racing plans agree or fail), writes
        the tokenizer (a BPE trained on the first `sample_bytes` of train documents in key order, the
        tokenizer.json given, or for `pretrained` the tokenizer of the pretrained base stored in the run
        at `run_store`, confined by store.confine.check_run_store) and returns `items`: one `shard`
        event per source object, ready to be mapped.
    {"op": "preprocess", "phase": "shard", "store", "source", "key": "books/a.jsonl"}
        tokenizes one object's documents and writes, per split it has documents of,
        `data/parts/<id>-<split>.bin` (flat uint16/uint32 ids, each document followed by end-of-text),
        for instruction data `data/parts/<id>-<split>.mask` (uint8, 1 = loss on that token), then the
        object's record `data/parts/<id>.json` (last). Idempotent: a retry writes the same bytes.
        (`shard_objects(store, source, keys)` does several objects in one call, the tokenizer loaded
        once and their documents encoded together, writing the same parts: `data prepare` uses it.)
    {"op": "preprocess", "phase": "manifest", "store"}
        collects the records into `data/manifest.json` (the format `data.open_dataset` reads), last.

Validation split: document d of object k (its key under the source) is held out when hash(k, d) <
val_fraction (so about that fraction of the documents); with a `val_source`, its documents are the val
split and none other. If the held-out documents have fewer than MIN_VAL_TOKENS tokens (a corpus of
one file, or a few small ones), they stay in train and the last max(val_fraction, MIN_VAL_SHARE) of
the train tokens are held out instead (views of the last parts).

The dataset URL is what a run spec's `dataset` names. Needs numpy and tokenizers (pyarrow,
datasets, transformers for those sources and tokenizers), not torch.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.events import BadEvent, field
from relaytrain_runtime.contract.keys import PARTS_PREFIX, PREPARE_KEY, TOKENIZER_KEY
from relaytrain_runtime.contract.prepare import (
    BPE,
    DEFAULT_SAMPLE_BYTES,
    DEFAULT_VAL_FRACTION,
    DEFAULT_VOCAB_SIZE,
    MIN_VOCAB_SIZE,
    PRETRAINED,
    val_fraction_problem,
)
from relaytrain_runtime.data.build import MANIFEST_FORMAT, DataError, train_tokenizer, view_tokens, write_manifest
from relaytrain_runtime.data.sources import FORMATS, detect, open_source, records, select
from relaytrain_runtime.data.tokens import (
    Tok,
    dtype_for,
    encode_texts,
    load_base,
    load_given,
    load_stored,
    render_chat,
    save,
)
from relaytrain_runtime.store import NotFound, check_run_store, check_source, open_store

MIN_VAL_SHARE = 0.05  # a tail hold-out takes at least this share of the tokens
MIN_VAL_TOKENS = 4096  # held-out documents with fewer tokens than this (a few eval windows) go back to train
ENCODE_BATCH = 512  # documents handed to the tokenizer's batch encoder at once


def part_id(source_url: str, key: str) -> str:
    return hashlib.sha256(f"{source_url}\0{key}".encode()).hexdigest()[:24]


def is_val(key: str, index: int, fraction: float) -> bool:
    """Document `index` of object `key` (relative to the source) is held out: the same wherever the corpus lives."""
    h = int(hashlib.sha256(f"{key}\0{index}".encode()).hexdigest()[:16], 16)
    return h < fraction * 2**64


# ------------------------------------------------------------------------------------------- plan


def settings(source_url: str, fmt: str | None, field_name: str | None, tokenizer: str, val_fraction: float,
             val_source: str | None, suffix: str, vocab_size: int) -> dict:
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if val_fraction_problem(val_fraction):
        raise DataError(f"val_fraction {val_fraction_problem(val_fraction)}")
    return {"source": source_url, "format": fmt, "field": field_name, "tokenizer": tokenizer,
            "val_fraction": val_fraction, "val_source": val_source, "suffix": suffix, "vocab_size": vocab_size}


def _objects(url: str, fmt: str | None, suffix: str) -> tuple[object, list[str], str]:
    store, keys = open_source(url)
    fmt = fmt or detect(keys)
    keys = select(keys, fmt, suffix)
    if not keys:
        raise DataError(f"no source objects under {url}" + (f" ending in {suffix!r}" if suffix else "")
                        + (f" of format {fmt}" if fmt != "text" else ""))
    return store, keys, fmt


def _fix_settings(store, wanted: dict) -> dict:
    """The dataset's settings, created once: a second plan with other settings is refused."""
    raw = (json.dumps(wanted, sort_keys=True) + "\n").encode()
    if not store.create(PREPARE_KEY, raw) and store.read(PREPARE_KEY) != raw:
        raise DataError(f"{store.url} is already being prepared with other settings ({PREPARE_KEY}); "
                        "use another --store, or delete its data/ objects first")
    return wanted


def plan(store_url: str, source_url: str, vocab_size: int, sample_bytes: int = DEFAULT_SAMPLE_BYTES,
         suffix: str = "", fmt: str | None = None, field_name: str | None = None, tokenizer: str = "bpe",
         val_fraction: float = DEFAULT_VAL_FRACTION, val_source: str | None = None, model: Tok | None = None) -> dict:
    """model: for tokenizer `pretrained`, the pretrained model's tokenizer (tokens.load_model / load_base)."""
    if (tokenizer == PRETRAINED) != (model is not None):
        raise DataError("tokenizer 'pretrained' needs the pretrained model the run starts from (--init-from DIR)"
                        if model is None else f"a pretrained model's tokenizer is used only with tokenizer "
                        f"'{PRETRAINED}', not {tokenizer!r}")
    store = open_store(store_url)
    source, keys, found = _objects(source_url, fmt, suffix)
    wanted = settings(source.url, found, field_name, tokenizer, val_fraction, val_source, suffix, vocab_size)
    if model is not None:
        wanted["model"] = model.where
    items = [{"op": "preprocess", "phase": "shard", "store": store_url, "source": source.url, "key": k} for k in keys]
    if val_source:
        vstore, vkeys, wanted["val_format"] = _objects(val_source, fmt, suffix)
        wanted["val_source"] = vstore.url
        items += [{"op": "preprocess", "phase": "shard", "store": store_url, "source": vstore.url, "key": k}
                  for k in vkeys]
    tok = None
    if not store.exists(TOKENIZER_KEY):
        tok = model or (_train(source, keys, wanted, sample_bytes) if tokenizer == "bpe" else load_given(tokenizer))
        tok.eos_id  # noqa: B018 (refuse a tokenizer without end-of-text before anything is written)
    _fix_settings(store, wanted)
    if tok is not None:
        save(store, tok)  # a racing plan writes the same: same settings, same sample
    return {"phase": "plan", "store": store.url, "count": len(items), "items": items}


def _train(source, keys: list[str], conf: dict, sample_bytes: int) -> Tok:
    """A byte-level BPE trained on the first `sample_bytes` of train documents in key order."""
    texts, total = [], 0
    for key in keys:
        for i, (_, doc) in enumerate(records(source, key, conf["format"], conf["field"])):
            if total >= sample_bytes:
                break
            if conf["val_source"] is None and is_val(key, i, conf["val_fraction"]):
                continue
            text = doc if isinstance(doc, str) else "\n".join(m["content"] for m in doc)
            texts.append(text)
            total += len(text.encode())
        if total >= sample_bytes:
            break
    if not total:
        raise DataError(f"{source.url}: the corpus is empty (no text in {len(keys)} object(s)); nothing to train on")
    return Tok(train_tokenizer(texts, conf["vocab_size"]), {}, {}, "bpe")


# ------------------------------------------------------------------------------------------ shard


def _read_settings(store) -> dict:
    try:
        return json.loads(store.read(PREPARE_KEY))
    except NotFound:
        raise RelayError(f"{store.url}/{PREPARE_KEY} does not exist; run the 'plan' phase first") from None


class _Objects:
    """Tokenizes the documents of several objects of one source, text documents of all of them together in
    `encode_batch` calls of up to ENCODE_BATCH documents (a text folder has one document per object), and
    writes each object's part as soon as all its documents are encoded. Every document is encoded alone
    whatever its batch, so an object's part is the same bytes however the objects are grouped."""

    def __init__(self, store, tok: Tok, conf: dict, source, source_url: str, forced: str | None):
        self.store, self.tok, self.conf, self.source, self.source_url = store, tok, conf, source, source_url
        self.fmt = conf["val_format"] if forced == "val" else conf["format"]
        self.forced = forced
        self.pending: list[tuple[list, str]] = []  # (the document's slot, its text)
        self.open: list[tuple[str, dict]] = []  # objects read, in order, not yet written: (key, split -> slots)
        self.done: list[dict] = []

    def add(self, key: str) -> None:
        docs: dict[str, list] = {"train": [], "val": []}
        for i, (where, doc) in enumerate(records(self.source, key, self.fmt, self.conf["field"])):
            split = self.forced or ("val" if is_val(key, i, self.conf["val_fraction"]) else "train")
            slot = [None]
            docs[split].append(slot)
            if isinstance(doc, str):
                self.pending.append((slot, doc))
                if len(self.pending) >= ENCODE_BATCH:
                    self.flush()
            else:
                slot[0] = render_chat(self.tok, doc, where)
        self.open.append((key, docs))

    def flush(self) -> None:
        """Encode the pending documents, then write every object whose documents are all encoded."""
        if self.pending:
            for (slot, _), ids in zip(self.pending, encode_texts(self.tok, [t for _, t in self.pending]),
                                      strict=True):
                slot[0] = (ids, None)
            self.pending.clear()
        for key, docs in self.open:
            self.done.append(self._write(key, {split: [slot[0] for slot in slots] for split, slots in docs.items()}))
        self.open.clear()

    def _write(self, key: str, docs: dict[str, list]) -> dict:
        """The object's part: per split its ids (and mask), then its record (last: the part exists)."""
        store, dtype, pid = self.store, dtype_for(self.tok.vocab_size), part_id(self.source_url, key)
        record = {"key": key, "source": self.source_url, "dtype": dtype, "splits": {}}
        for split, items in docs.items():
            if not items:
                continue
            ids = np.concatenate([d[0] for d in items]).astype(dtype)
            entry = {"name": f"{PARTS_PREFIX}{pid}-{split}.bin", "tokens": int(len(ids)), "documents": len(items),
                     "compression": None}
            entry["sha256"] = _put(store, entry["name"], ids.tobytes())
            if any(d[1] is not None for d in items):
                mask = np.concatenate([d[1] if d[1] is not None else np.ones(len(d[0]), np.uint8) for d in items])
                entry["mask"] = {"name": f"{PARTS_PREFIX}{pid}-{split}.mask", "compression": None}
                entry["mask"]["sha256"] = _put(store, entry["mask"]["name"], mask.tobytes())
            record["splits"][split] = entry
        store.write(f"{PARTS_PREFIX}{pid}.json", json.dumps(record, sort_keys=True).encode())
        return {"phase": "shard", "key": key, "documents": {s: e["documents"] for s, e in record["splits"].items()},
                "tokens": sum(e["tokens"] for e in record["splits"].values())}


def shard_objects(store_url: str, source_url: str, keys: list[str]) -> list[dict]:
    """The shard phase for several objects of one source in one call (the tokenizer and settings loaded once,
    small documents encoded together); the same parts as one `shard` per key."""
    store = open_store(store_url)
    tok = load_stored(store)
    conf = _read_settings(store)
    if source_url not in (conf["source"], conf.get("val_source")):
        raise BadEvent(f"event field 'source' must be this dataset's source {conf['source']}, got {source_url!r}")
    forced = "val" if source_url == conf.get("val_source") else ("train" if conf.get("val_source") else None)
    objects = _Objects(store, tok, conf, open_store(source_url), source_url, forced)
    for key in keys:
        objects.add(key)
    objects.flush()
    return objects.done


def shard(store_url: str, source_url: str, key: str) -> dict:
    return shard_objects(store_url, source_url, [key])[0]


def _put(store, name: str, raw: bytes) -> str:
    store.write(name, raw)
    return hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------------------- manifest


def _hold_out_tail(train: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """Split the end of the train stream off as val: views [start, stop) of the last parts."""
    total = sum(s["tokens"] for s in train)
    need = max(1, math.ceil(max(fraction, MIN_VAL_SHARE) * total))
    train, val = [dict(s) for s in train], []
    while need > 0 and train:
        last = train.pop()
        take = min(need, last["tokens"])
        val.insert(0, {**last, "start": last["tokens"] - take, "stop": last["tokens"]})
        if take < last["tokens"]:
            train.append({**last, "start": 0, "stop": last["tokens"] - take})
        need -= take
    return train, val


def manifest(store_url: str) -> dict:
    store = open_store(store_url)
    records_ = [json.loads(store.read(k)) for k in store.list(PARTS_PREFIX) if k.endswith(".json")]
    if not records_:
        raise RelayError(f"{store.url} has no token parts under {PARTS_PREFIX}; run the 'shard' phase first")
    conf = _read_settings(store)
    tok = load_stored(store)
    records_.sort(key=lambda r: (r["source"] != conf["source"], r["key"]))
    splits = {s: [r["splits"][s] for r in records_ if s in r["splits"]] for s in ("train", "val")}
    if not splits["train"] or not sum(s["tokens"] for s in splits["train"]):
        raise DataError(f"{conf['source']}: the corpus is empty (no train documents in {len(records_)} object(s))")
    held_out = "documents"
    documents = {s: sum(e["documents"] for e in v) for s, v in splits.items()}
    if not conf.get("val_source") and sum(s["tokens"] for s in splits["val"]) < MIN_VAL_TOKENS:
        documents = {"train": documents["train"] + documents["val"], "val": 0}
        splits["train"], splits["val"] = _hold_out_tail(splits["train"] + splits["val"], conf["val_fraction"])
        held_out = "tail"
    data = {"format": MANIFEST_FORMAT, "tokenizer": TOKENIZER_KEY, "vocab_size": tok.vocab_size,
            "dtype": records_[0]["dtype"], "special_tokens": tok.special_tokens(),
            "unigram_entropy_nats": _entropy(store, splits["train"], tok.vocab_size, records_[0]["dtype"]),
            "corpus": {"name": "prepared", "source": conf["source"], "format": conf["format"],
                       "objects": len(records_), "val": held_out, "val_fraction": conf["val_fraction"],
                       "val_source": conf.get("val_source"), "tokenizer": conf["tokenizer"],
                       "documents": documents,
                       "instruction": any("mask" in e for v in splits.values() for e in v),
                       **({"model": conf["model"]} if "model" in conf else {})},
            "splits": splits}
    write_manifest(store, data)
    return {"phase": "manifest", "store": store.url, "objects": len(records_),
            "tokens": {s: sum(map(view_tokens, v)) for s, v in splits.items()}}


def _entropy(store, shards: list[dict], vocab_size: int, dtype: str) -> float:
    counts = np.zeros(vocab_size, dtype=np.int64)
    for s in shards:
        ids = np.frombuffer(store.read(s["name"]), dtype=dtype)[s.get("start", 0):s.get("stop", s["tokens"])]
        counts += np.bincount(ids, minlength=vocab_size)
    p = counts[counts > 0] / max(counts.sum(), 1)
    return float(-(p * np.log(p)).sum())


def preprocess_op(event: dict, deadline: float) -> dict:
    """Validate the event (every field's type first), confine every location it names to what the
    deployment allows (store/confine.py), then run its phase."""
    phase = field(event, "phase", str, "shard" if "key" in event else None, required="key" not in event)
    if phase == "plan":
        args = dict(source_url=field(event, "source", str, required=True),
                    vocab_size=field(event, "vocab_size", int, DEFAULT_VOCAB_SIZE, minimum=MIN_VOCAB_SIZE),
                    sample_bytes=field(event, "sample_bytes", int, DEFAULT_SAMPLE_BYTES, minimum=1),
                    suffix=field(event, "suffix", str, ""), fmt=field(event, "format", str),
                    field_name=field(event, "field", str), tokenizer=field(event, "tokenizer", str, BPE),
                    val_fraction=float(field(event, "val_fraction", (int, float), DEFAULT_VAL_FRACTION)),
                    val_source=field(event, "val_source", str))
        for location in (
            args["source_url"],
            args["val_source"],
            None if args["tokenizer"] in (BPE, PRETRAINED) else args["tokenizer"],
        ):
            if location is not None:
                check_source(location)
        if args["tokenizer"] == PRETRAINED:  # the run's own base, in its store (never a model path from the event)
            run_store = field(event, "run_store", str, required=True)
            args["model"] = load_base(open_store(check_run_store(run_store)))
        return plan(event["store"], **args)
    if phase == "shard":
        source, key = field(event, "source", str, required=True), field(event, "key", str, required=True)
        check_source(source)
        return shard(event["store"], source, key)
    if phase == "manifest":
        return manifest(event["store"])
    raise BadEvent(f"event field 'phase' must be plan, shard or manifest, got {phase!r}")
