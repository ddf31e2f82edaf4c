"""Building a dataset in memory (the stdlib corpus), the manifest, and finding a run's dataset.

The layout of a dataset in a store is in docs/DATA.md; sources other than the stdlib go through
relaytrain_runtime.preprocess (plan -> shard per object -> manifest).

The default corpus ("stdlib") is the running Python's own standard library sources: sorted by path,
every 20th file held out for validation, capped at `STDLIB_CAP_BYTES`. Nothing is downloaded.

Building a dataset needs numpy and tokenizers only (no torch).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
import sysconfig
from pathlib import Path

import numpy as np

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import DATA_PREFIX, MANIFEST_KEY, TOKENIZER_KEY
from relaytrain_runtime.store import NotFound, Store, open_store

MANIFEST_FORMAT = 1
STDLIB_CAP_BYTES = 6_000_000  # first 6 MB of stdlib sources in sorted order: a few seconds to build
VAL_EVERY = 20  # every 20th file (sorted order) is held out
SHARD_TOKENS = 1 << 20
EOS, PAD, MASK = "<|endoftext|>", "<pad>", "<mask>"
SPECIAL_TOKENS = [EOS, PAD, MASK]  # ids 0, 1, 2
MASK_KEY = 0x4D4C4D  # stream keys: keep the MLM and eval streams apart from the sampling stream
EVAL_KEY = 0x4556414C
# bytes per token of the byte-level BPE trained on the stdlib train split, by vocabulary size (CPython 3.11,
# the first STDLIB_CAP_BYTES; measured with train_tokenizer + encode_split): what the planner estimates from
STDLIB_BYTES_PER_TOKEN = ((512, 2.04), (4096, 3.39), (30522, 3.94), (50257, 3.97))


class DataError(RelayError):
    """The dataset is missing, corrupt or does not fit the model."""


# ----------------------------------------------------------------------------------------- corpus


def stdlib_files(cap_bytes: int = STDLIB_CAP_BYTES) -> list[tuple[str, str]]:
    """(relative path, text) of the stdlib's .py files in sorted order, up to `cap_bytes` in total."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    out, total = [], 0
    for p in paths:
        if total >= cap_bytes:
            break
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.append((p.relative_to(root).as_posix(), text))
        total += len(text.encode())
    if not out:
        raise DataError(f"no Python sources found under {root} for the stdlib corpus; use a prepared dataset URL")
    return out


@functools.cache
def stdlib_train_bytes(cap_bytes: int = STDLIB_CAP_BYTES) -> int:
    """UTF-8 bytes of the stdlib corpus' train split (read once per process)."""
    return sum(len(t.encode()) for t in split_files(stdlib_files(cap_bytes))["train"])


def bytes_per_token(vocab_size: int) -> float:
    """STDLIB_BYTES_PER_TOKEN interpolated in log(vocabulary), clamped at its ends."""
    sizes = [v for v, _ in STDLIB_BYTES_PER_TOKEN]
    i = bisect.bisect_left(sizes, vocab_size)
    if i == 0 or i == len(sizes):
        return STDLIB_BYTES_PER_TOKEN[min(i, len(sizes) - 1)][1]
    (v0, r0), (v1, r1) = STDLIB_BYTES_PER_TOKEN[i - 1], STDLIB_BYTES_PER_TOKEN[i]
    return r0 + (r1 - r0) * math.log(vocab_size / v0) / math.log(v1 / v0)


def split_files(files: list[tuple[str, str]]) -> dict[str, list[str]]:
    val = [t for i, (_, t) in enumerate(files) if i % VAL_EVERY == VAL_EVERY // 2]
    train = [t for i, (_, t) in enumerate(files) if i % VAL_EVERY != VAL_EVERY // 2]
    return {"train": train, "val": val}


# -------------------------------------------------------------------------------------- building


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def encode_split(tok, texts: list[str], eos: int | None = None) -> np.ndarray:
    """Token ids of the documents, each followed by the end-of-text token (`eos`: its id, default EOS's)."""
    eos = tok.token_to_id(EOS) if eos is None else eos
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eos)
    return np.asarray(ids, dtype=np.int64)


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the token unigram distribution: the loss of the best context-free model."""
    counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def write_dataset(store: Store, splits: dict[str, list[str]], vocab_size: int, *, corpus: dict,
                  compression: str | None = None, shard_tokens: int = SHARD_TOKENS, tokenizer=None) -> dict:
    """Train the tokenizer on the train split (or use `tokenizer`: (a pretrained `tokenizers.Tokenizer`, its ids
    of SPECIAL_TOKENS)), write shards, then the manifest (last)."""
    if tokenizer is None:
        tok = train_tokenizer(splits["train"], vocab_size)
        special = {name: tok.token_to_id(name) for name in SPECIAL_TOKENS}
    else:
        tok, special = tokenizer
    store.write(TOKENIZER_KEY, tok.to_str().encode())
    ids = {split: [encode_split(tok, texts, special[EOS])] for split, texts in splits.items()}
    return write_token_dataset(store, ids, tok.get_vocab_size(), special, corpus=corpus,
                               compression=compression, shard_tokens=shard_tokens)


def write_token_dataset(store: Store, splits: dict[str, list[np.ndarray]], vocab_size: int, special: dict,
                        *, corpus: dict, compression: str | None = None, shard_tokens: int = SHARD_TOKENS) -> dict:
    """Shards of already-tokenized splits (each a list of id arrays, concatenated), then the manifest (last).

    The tokenizer (`data/tokenizer.json`) is the caller's to write."""
    if compression not in (None, "zstd"):
        raise DataError(f"compression must be none or zstd, got {compression!r}")
    dtype = "uint16" if vocab_size <= 1 << 16 else "uint32"
    manifest = {"format": MANIFEST_FORMAT, "tokenizer": TOKENIZER_KEY, "vocab_size": vocab_size, "dtype": dtype,
                "special_tokens": special, "corpus": corpus, "splits": {}}
    for split, arrays in splits.items():
        shards, n = [], 0
        if split == "train":
            manifest["unigram_entropy_nats"] = unigram_entropy(np.concatenate(arrays), vocab_size)
        for ids in arrays:
            for start in range(0, len(ids), shard_tokens):
                shards.append(_write_shard(store, f"{DATA_PREFIX}{split}-{n:05d}.bin",
                                           ids[start:start + shard_tokens].astype(dtype).tobytes(), compression))
                shards[-1]["tokens"] = int(min(shard_tokens, len(ids) - start))
                n += 1
        manifest["splits"][split] = shards
    write_manifest(store, manifest)
    return manifest


def _write_shard(store: Store, name: str, raw: bytes, compression: str | None) -> dict:
    if compression == "zstd":
        import zstandard

        raw, name = zstandard.ZstdCompressor(level=3).compress(raw), name + ".zst"
    store.write(name, raw)
    return {"name": name, "sha256": hashlib.sha256(raw).hexdigest(), "compression": compression}


def write_manifest(store: Store, manifest: dict) -> None:
    """The dataset's commit point: written last, after every object it names."""
    store.write(MANIFEST_KEY, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def build_stdlib_dataset(store: Store, vocab_size: int, *, cap_bytes: int = STDLIB_CAP_BYTES,
                         compression: str | None = None, tokenizer=None) -> dict:
    files = stdlib_files(cap_bytes)
    corpus = {"name": "stdlib", "root": sysconfig.get_paths()["stdlib"], "files": len(files),
              "bytes": sum(len(t.encode()) for _, t in files), "val_every": VAL_EVERY}
    return write_dataset(store, split_files(files), vocab_size, corpus=corpus, compression=compression,
                         tokenizer=tokenizer)


def dataset_store(run_store: Store, spec) -> Store:
    """The store holding the run's dataset: the run store itself for `stdlib`, else the dataset URL."""
    return run_store if spec.dataset == "stdlib" else open_store(spec.dataset)


def ensure_dataset(run_store: Store, spec) -> dict:
    """The run's dataset manifest, building the stdlib dataset first if it is not there yet.

    Building is deterministic, so two workers racing to build it write identical objects.
    """
    store = dataset_store(run_store, spec)
    if not store.exists(MANIFEST_KEY):
        if spec.dataset != "stdlib":
            raise DataError(f"dataset {spec.dataset} has no {MANIFEST_KEY}; prepare it with "
                            "`relaytrain data prepare SOURCE --store URL` or use dataset 'stdlib'")
        tokenizer = None
        if spec.init_from:  # a pretrained start trains on its own tokenizer
            from relaytrain_runtime.pretrained import base_tokenizer

            tokenizer = base_tokenizer(run_store, spec.init_sha256)
        build_stdlib_dataset(store, spec.model.vocab_size, tokenizer=tokenizer)
    return read_manifest(store)


def view_tokens(shard: dict) -> int:
    """Tokens of a manifest's shard entry: the whole object, or its [start, stop) view (a split's tail hold-out)."""
    return int(shard.get("stop", shard["tokens"])) - int(shard.get("start", 0))


def read_manifest(store: Store) -> dict:
    try:
        raw = store.read(MANIFEST_KEY)
    except NotFound:
        raise DataError(f"{store.url}/{MANIFEST_KEY} does not exist; build the dataset first "
                        "(`relaytrain init` builds the stdlib dataset)") from None
    try:
        manifest = json.loads(raw)
        manifest["splits"]["train"], manifest["vocab_size"], manifest["dtype"]  # noqa: B018 (shape check)
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{store.url}/{MANIFEST_KEY} is corrupt (not a dataset manifest); "
                        "delete the data/ objects and run `relaytrain init` again to rebuild it") from None
    return manifest
