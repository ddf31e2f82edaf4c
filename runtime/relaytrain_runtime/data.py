"""Data: corpus -> byte-level BPE tokenizer -> token shards + manifest -> batches.

Layout in a store (the run's own store for `dataset: stdlib`, or any store holding a prepared dataset):
    data/manifest.json     {"format": 1, "tokenizer": "data/tokenizer.json", "vocab_size", "dtype",
                            "special_tokens", "unigram_entropy_nats", "corpus",
                            "splits": {"train": [shard...], "val": [shard...]}}
                           shard = {"name": "data/train-00000.bin[.zst]", "tokens", "sha256", "compression"}
    data/tokenizer.json    the `tokenizers` byte-level BPE, trained on the train split
    data/<split>-NNNNN.bin flat little-endian uint16 (vocab <= 65536) or uint32 token ids; `.zst` if compressed

The batch of (seed, step) is a pure function of those two plus the dataset: every worker builds any
step's batch directly, with no replay. `batch(spec, step, rank, world, dataset)` returns rank's slice
of the global batch, so the global batch is the same however it is split. BERT batches apply MLM
masking keyed by the same (seed, step).

The default corpus ("stdlib") is the running Python's own standard library sources: sorted by path,
every 20th file held out for validation, capped at `STDLIB_CAP_BYTES`. Nothing is downloaded.

Building a dataset needs numpy and tokenizers only (no torch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relaytrain_runtime import RelayError
from relaytrain_runtime.store import NotFound, Store, open_store

from relaytrain_runtime.contract.keys import DATA_PREFIX, MANIFEST_KEY, TOKENIZER_KEY  # noqa: F401 (re-exported)
STDLIB_CAP_BYTES = 6_000_000  # first 6 MB of stdlib sources in sorted order: a few seconds to build
VAL_EVERY = 20  # every 20th file (sorted order) is held out
SHARD_TOKENS = 1 << 20
EOS, PAD, MASK = "<|endoftext|>", "<pad>", "<mask>"
SPECIAL_TOKENS = [EOS, PAD, MASK]  # ids 0, 1, 2
MASK_KEY = 0x4D4C4D  # stream keys: keep the MLM and eval streams apart from the sampling stream
EVAL_KEY = 0x4556414C


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
    """Token ids of the documents, each followed by the end-of-text token."""
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
    """Train the tokenizer on the train split (or use `tokenizer`: (a pretrained `tokenizers.Tokenizer`,
    its ids of SPECIAL_TOKENS)), write shards, then the manifest (last)."""
    if compression not in (None, "zstd"):
        raise DataError(f"compression must be none or zstd, got {compression!r}")
    if tokenizer is None:
        tok = train_tokenizer(splits["train"], vocab_size)
        special = {name: tok.token_to_id(name) for name in SPECIAL_TOKENS}
    else:
        tok, special = tokenizer
    dtype = "uint16" if vocab_size <= 1 << 16 else "uint32"
    store.write(TOKENIZER_KEY, tok.to_str().encode())
    manifest = {"format": 1, "tokenizer": TOKENIZER_KEY, "vocab_size": tok.get_vocab_size(), "dtype": dtype,
                "special_tokens": special, "corpus": corpus, "splits": {}}
    for split, texts in splits.items():
        ids = encode_split(tok, texts, special[EOS])
        if split == "train":
            manifest["unigram_entropy_nats"] = unigram_entropy(ids, tok.get_vocab_size())
        shards = []
        for i, start in enumerate(range(0, len(ids), shard_tokens)):
            raw = ids[start:start + shard_tokens].astype(dtype).tobytes()
            name = f"{DATA_PREFIX}{split}-{i:05d}.bin"
            if compression == "zstd":
                import zstandard

                raw, name = zstandard.ZstdCompressor(level=3).compress(raw), name + ".zst"
            store.write(name, raw)
            shards.append({"name": name, "tokens": int(min(shard_tokens, len(ids) - start)),
                           "sha256": hashlib.sha256(raw).hexdigest(), "compression": compression})
        manifest["splits"][split] = shards
    store.write(MANIFEST_KEY, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


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
                            "`relaytrain-runtime preprocess` or use dataset 'stdlib'")
        tokenizer = None
        if spec.init_from:  # a pretrained start trains on its own tokenizer
            from relaytrain_runtime.pretrained import base_tokenizer

            tokenizer = base_tokenizer(run_store, spec.init_sha256)
        build_stdlib_dataset(store, spec.model.vocab_size, tokenizer=tokenizer)
    return read_manifest(store)


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


# --------------------------------------------------------------------------------------- reading


@dataclass
class Dataset:
    manifest: dict
    splits: dict[str, list[np.ndarray]]  # per split, one flat token array per shard
    url: str

    @property
    def vocab_size(self) -> int:
        return self.manifest["vocab_size"]

    @property
    def special(self) -> dict[str, int]:
        return self.manifest["special_tokens"]

    def tokens(self, split: str) -> int:
        return sum(len(a) for a in self.splits[split])

    def tokenizer_json(self, store: Store) -> bytes:
        return store.read(self.manifest["tokenizer"])

    def batch(self, spec, step: int, rank: int = 0, world: int = 1) -> dict:
        return batch(spec, step, rank, world, self)


def _shard_array(store: Store, shard: dict, dtype: str, cache_dir: str | None) -> np.ndarray:
    cached = Path(cache_dir) / f"{shard['sha256']}.bin" if cache_dir else None
    if cached is not None and cached.is_file():
        return np.memmap(cached, dtype=dtype, mode="r")
    raw = store.read(shard["name"])
    if hashlib.sha256(raw).hexdigest() != shard["sha256"]:
        raise DataError(f"{store.url}/{shard['name']} is corrupt (sha256 mismatch with {MANIFEST_KEY}); "
                        "rebuild or re-upload the dataset")
    if shard.get("compression") == "zstd":
        import zstandard

        raw = zstandard.ZstdDecompressor().decompress(raw)
    arr = np.frombuffer(raw, dtype=dtype)
    if len(arr) != shard["tokens"]:
        raise DataError(f"{store.url}/{shard['name']} holds {len(arr)} tokens, the manifest says {shard['tokens']}")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # unique per writer: threads of one process, and Lambdas sharing an EFS cache (same pid), race here
        tmp = f"{cached}.part-{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}"
        arr.tofile(tmp)
        os.replace(tmp, cached)
    return arr


def open_dataset(run_store: Store, spec, cache_dir: str | None = None) -> Dataset:
    """The run's dataset, verified (sha256 per shard) and checked against the model's vocabulary."""
    store = dataset_store(run_store, spec)
    manifest = read_manifest(store)
    if manifest["vocab_size"] > spec.model.vocab_size:
        raise DataError(f"dataset {store.url} has a vocabulary of {manifest['vocab_size']} tokens, more than "
                        f"{spec.preset}'s {spec.model.vocab_size}; prepare it with vocab_size <= {spec.model.vocab_size}")
    splits = {name: [_shard_array(store, s, manifest["dtype"], cache_dir) for s in shards]
              for name, shards in manifest["splits"].items()}
    ds = Dataset(manifest, splits, store.url)
    for split in ("train", "val"):
        if split in splits and not any(len(a) >= spec.sequence_length for a in splits[split]):
            raise DataError(f"dataset {store.url}: the {split} split has no shard of at least "
                            f"{spec.sequence_length} tokens (the sequence length)")
    return ds


def _windows(arrays: list[np.ndarray], length: int, starts: np.ndarray) -> np.ndarray:
    """Token windows of `length` at global start indices over the concatenation of valid starts."""
    valid = np.array([max(len(a) - length + 1, 0) for a in arrays], dtype=np.int64)
    bounds = np.cumsum(valid)
    out = np.empty((len(starts), length), dtype=np.int64)
    for row, u in enumerate(starts):
        s = int(np.searchsorted(bounds, u, side="right"))
        off = int(u - (bounds[s - 1] if s else 0))
        out[row] = arrays[s][off:off + length]
    return out


def _sample(arrays: list[np.ndarray], length: int, key: list[int], count: int) -> np.ndarray:
    total = sum(max(len(a) - length + 1, 0) for a in arrays)
    starts = np.random.default_rng(key).integers(0, total, size=count)
    return _windows(arrays, length, starts)


def _mlm(tokens: np.ndarray, key: list[int], prob: float, vocab_size: int, special: dict[str, int]):
    """BERT masking: choose `prob` of the positions; 80% -> <mask>, 10% -> random token, 10% unchanged."""
    rng = np.random.default_rng(key)
    chosen = rng.random(tokens.shape) < prob
    action = rng.random(tokens.shape)
    random_ids = rng.integers(len(SPECIAL_TOKENS), vocab_size, size=tokens.shape)
    labels = np.where(chosen, tokens, -100)
    inputs = np.where(chosen & (action < 0.8), special[MASK], tokens)
    inputs = np.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def _to_batch(spec, tokens: np.ndarray, key: list[int], vocab_size: int, special: dict[str, int]) -> dict:
    import torch

    if spec.model.family == "bert":
        inputs, labels = _mlm(tokens, key + [MASK_KEY], spec.mlm_probability, vocab_size, special)
    else:
        inputs, labels = tokens, tokens  # the GPT shifts labels inside, as Hugging Face does
    return {"input_ids": torch.from_numpy(np.ascontiguousarray(inputs)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels))}


def batch(spec, step: int, rank: int, world: int, dataset: Dataset) -> dict:
    """Rank `rank`'s slice of the global training batch of `step`: a pure function of (seed, step, rank, world).

    Returns {"input_ids": LongTensor[b, T], "labels": LongTensor[b, T]} with b = batch_size / world.
    """
    if world < 1 or not 0 <= rank < world or spec.batch_size % world:
        raise DataError(f"rank {rank} of world {world}: world must divide batch_size {spec.batch_size}")
    key = [spec.seed, step]
    tokens = _sample(dataset.splits["train"], spec.sequence_length, key, spec.batch_size)
    ids = _to_batch(spec, tokens, key, dataset.vocab_size, dataset.special)
    per = spec.batch_size // world
    return {k: v[rank * per:(rank + 1) * per] for k, v in ids.items()}


def eval_batch(spec, index: int, dataset: Dataset, split: str = "val") -> dict:
    """The `index`-th held-out batch: fixed for a run (seed), independent of training progress."""
    key = [spec.seed, EVAL_KEY, index]
    tokens = _sample(dataset.splits[split], spec.sequence_length, key, spec.micro_batch)
    return _to_batch(spec, tokens, key, dataset.vocab_size, dataset.special)


def entropy_baseline(dataset: Dataset) -> float:
    return float(dataset.manifest.get("unigram_entropy_nats", math.nan))
