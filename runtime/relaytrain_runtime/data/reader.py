"""Reading a prepared dataset: shards memory-mapped from a local cache, fetched only when a batch needs them.

A split is one token stream: its shards concatenated in manifest order (a shard entry may be a
`[start, stop)` view of its object). A training sample is a window of `sequence_length` tokens.

Order (`spec.sampling`):
- `epochs` (default): the train stream is cut into N = tokens // T non-overlapping windows; global
  sample g = step * batch_size + i is window `permute(g % N)` of epoch `g // N`, where `permute` is
  a keyed bijection of [0, N) (a Feistel network with cycle walking, keyed by (seed, epoch)). Every
  window is seen once per epoch, and any step's batch is computed directly: resuming needs no replay.
- `replacement`: window starts drawn uniformly from every token offset, keyed by (seed, step).

Eval batches are drawn with replacement from the val stream keyed by (seed, index): fixed per run.
Instruction data carries a mask shard per token shard: labels are -100 where the mask is 0
(Hugging Face's ignore_index), so only response tokens carry loss.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from relaytrain_runtime.data.build import (
    EVAL_KEY,
    MASK,
    MASK_KEY,
    SPECIAL_TOKENS,
    DataError,
    dataset_store,
    read_manifest,
    view_tokens,
)
from relaytrain_runtime.store import Store, StoreError
from relaytrain_runtime.store.cache import ShardCache

ORDER_KEY = 0x4F524452  # keeps the epoch permutation stream apart from the others
SAMPLING = ("epochs", "replacement")
CACHE_ENV = "RELAYTRAIN_CACHE_DIR"


def default_cache_dir() -> str:
    """Where shards are cached when the caller names no cache: $RELAYTRAIN_CACHE_DIR, else the temp dir
    (Lambda's /tmp, a node's local disk)."""
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "relaytrain-cache")


# ------------------------------------------------------------------------------------ token streams


@dataclass
class Stream:
    """One split: shard views fetched and memory-mapped on first use.

    A mapped shard is held in the cache (never evicted while mapped); with a cache budget the least
    recently read shards are unmapped and released when the next one would not fit, so a leg reading more
    shards than the budget holds works through them (refetching a released one when read again)."""

    store: Store
    shards: list[dict]
    dtype: str
    cache: ShardCache
    _maps: OrderedDict = field(default_factory=OrderedDict)  # shard -> (tokens, mask, holds, bytes), LRU first
    _opened: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        sizes = [view_tokens(s) for s in self.shards]
        self.bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self.masked = any("mask" in s for s in self.shards)

    def __len__(self) -> int:
        return int(self.bounds[-1])

    @property
    def fetched(self) -> int:
        """How many shards this process has fetched (the rest were never needed)."""
        return len(self._opened)

    @property
    def mapped(self) -> int:
        """How many shards are mapped (held in the cache) now."""
        return len(self._maps)

    def _arrays(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            if i in self._maps:
                self._maps.move_to_end(i)
            else:
                self._release_for(self._bytes(i))
                self._maps[i] = self._open(i)
                self._opened.add(i)
                if self._release_for(0, keep=1):  # its size on disk is known now (a .zst object and its copy)
                    self.cache.make_room(0)
            tokens, mask, _, _ = self._maps[i]
            return tokens, mask

    def _bytes(self, i: int) -> int:
        """The shard's bytes once mapped: its tokens, and its mask if it has one."""
        tokens = self.shards[i]["tokens"]
        return tokens * np.dtype(self.dtype).itemsize + (tokens if "mask" in self.shards[i] else 0)

    def _release_for(self, need: int, keep: int = 0) -> bool:
        """Unmap and release the least recently read shards (all but the newest `keep`) until `need` more bytes
        fit the cache's budget; whether any was released."""
        if self.cache.budget is None:
            return False
        held, released = sum(entry[3] for entry in self._maps.values()), False
        while len(self._maps) > keep and held + need > self.cache.budget:
            _, (_, _, holds, size) = self._maps.popitem(last=False)
            for h in holds:
                h.release()
            held, released = held - size, True
        return released

    def _open(self, i: int) -> tuple:
        shard = self.shards[i]
        objects = [(shard, self.dtype)] + ([(shard["mask"], "uint8")] if "mask" in shard else [])
        holds, arrays, size = [], [], 0
        try:
            for obj, dtype in objects:
                holds.append(self.cache.hold(obj["sha256"]))  # before the fetch: nobody evicts it meanwhile
                arr, on_disk = self._map(obj, dtype, shard["tokens"])
                arrays.append(arr)
                size += on_disk
        except BaseException:
            for h in holds:
                h.release()
            raise
        return arrays[0], arrays[1] if len(arrays) > 1 else None, holds, size

    def _map(self, obj: dict, dtype: str, tokens: int) -> tuple[np.ndarray, int]:
        """The object's tokens memory-mapped, and the bytes it takes in the cache."""
        raw = tokens * np.dtype(dtype).itemsize
        zstd = obj.get("compression") == "zstd"
        try:
            path = self.cache.fetch(self.store, obj["name"], obj["sha256"], size=None if zstd else raw)
        except StoreError as exc:
            raise DataError(f"{self.store.url}/{obj['name']} is corrupt or unreadable ({exc}); "
                            "rebuild or re-upload the dataset") from None
        on_disk = os.path.getsize(path)
        if zstd:
            if not os.path.exists(f"{path}.raw"):
                self.cache.make_room(raw, keep=path)
            path = _decompressed(path)
            on_disk += os.path.getsize(path)
        arr = np.memmap(path, dtype=dtype, mode="r")
        if len(arr) != tokens:
            raise DataError(f"{self.store.url}/{obj['name']} holds {len(arr)} tokens, the manifest says {tokens}")
        return arr, on_disk

    def read(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Tokens [start, start + length) of the stream (and their loss mask, if the split has one)."""
        out = np.empty(length, dtype=np.int64)
        mask = np.ones(length, dtype=bool) if self.masked else None
        pos, end = start, start + length
        while pos < end:
            i = int(np.searchsorted(self.bounds, pos, side="right")) - 1
            lo = self.shards[i].get("start", 0) + pos - int(self.bounds[i])
            n = min(end, int(self.bounds[i + 1])) - pos
            tokens, m = self._arrays(i)
            out[pos - start:pos - start + n] = tokens[lo:lo + n]
            if mask is not None and m is not None:
                mask[pos - start:pos - start + n] = m[lo:lo + n] != 0
            pos += n
        return out, mask


def _decompressed(path) -> str:
    """The decompressed sibling of a cached .zst shard, written once (temp file, then rename)."""
    final = f"{path}.raw"
    if not os.path.exists(final):
        import zstandard

        tmp = f"{final}.part-{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}"
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
        os.replace(tmp, final)
    return final


@dataclass
class Dataset:
    manifest: dict
    splits: dict[str, Stream]
    url: str

    @property
    def vocab_size(self) -> int:
        return self.manifest["vocab_size"]

    @property
    def special(self) -> dict[str, int]:
        return self.manifest["special_tokens"]

    def tokens(self, split: str) -> int:
        return len(self.splits[split])

    def tokenizer_json(self, store: Store) -> bytes:
        return store.read(self.manifest["tokenizer"])

    def batch(self, spec, step: int, rank: int = 0, world: int = 1) -> dict:
        return batch(spec, step, rank, world, self)


def open_dataset(run_store: Store, spec, cache_dir: str | None = None) -> Dataset:
    """The run's dataset, checked against the model; shards are fetched (sha256-verified) when first read."""
    store = dataset_store(run_store, spec)
    manifest = read_manifest(store)
    check_fits(manifest, spec, store.url)
    cache = ShardCache.for_deployment(cache_dir or default_cache_dir())
    splits = {name: Stream(store, shards, manifest["dtype"], cache) for name, shards in manifest["splits"].items()}
    for split in ("train", "val"):
        if split in splits and len(splits[split]) < spec.sequence_length:
            raise DataError(f"dataset {store.url}: the {split} split has {len(splits[split])} tokens, fewer than "
                            f"the sequence length {spec.sequence_length}; prepare more text or use a shorter seq_len")
    return Dataset(manifest, splits, store.url)


def check_fits(manifest: dict, spec, where: str) -> None:
    """The dataset's vocabulary fits the model, and the special tokens the model family needs exist."""
    if manifest["vocab_size"] > spec.model.vocab_size:
        raise DataError(f"dataset {where} has a vocabulary of {manifest['vocab_size']} tokens, more than "
                        f"{spec.preset}'s {spec.model.vocab_size}; prepare it with vocab_size <= "
                        f"{spec.model.vocab_size} or pick a preset with a larger vocabulary")
    if spec.model.family == "bert" and manifest["special_tokens"].get(MASK) is None:
        raise DataError(f"dataset {where}: its tokenizer has no {MASK} token, which {spec.preset} (masked LM) needs; "
                        "prepare it with the trained BPE tokenizer or one that defines <mask>")


# ------------------------------------------------------------------------------------------- order


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def permute(index: np.ndarray, n: int, seed: int, epoch: int, rounds: int = 4) -> np.ndarray:
    """A keyed bijection of [0, n): position -> window, a pure function of (seed, epoch, position)."""
    if n < 1:
        raise DataError("cannot order an empty split")
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = np.random.default_rng([seed, epoch, ORDER_KEY]).integers(0, 2**63, size=rounds, dtype=np.uint64)
    x = np.asarray(index, dtype=np.uint64).copy()
    todo = np.ones(x.shape, dtype=bool)
    with np.errstate(over="ignore"):
        while todo.any():  # cycle walking: re-encrypt until the value is back inside [0, n)
            left, right = x[todo] >> np.uint64(half), x[todo] & mask
            for k in keys:
                left, right = right, left ^ (_mix(right ^ k) & mask)
            x[todo] = (left << np.uint64(half)) | right
            todo = x >= np.uint64(n)
    return x.astype(np.int64)


def windows(spec, dataset: Dataset) -> int:
    """Non-overlapping training windows per epoch."""
    return dataset.tokens("train") // spec.sequence_length


def position(spec, step: int, dataset: Dataset) -> dict:
    """Where the run stands in its data after `step` optimizer steps: {"epoch", "position", "tokens_seen"}.

    epochs: epoch = samples // windows, position = samples % windows (in windows). replacement: the
    same arithmetic gives the nominal epoch (windows drawn / windows in the split)."""
    samples = step * spec.batch_size
    n = windows(spec, dataset)
    return {"epoch": samples // n, "position": samples % n, "tokens_seen": samples * spec.sequence_length}


def epochs(spec, train_tokens: int) -> float:
    """How many passes over a train split of `train_tokens` tokens the run's steps take (for the planner)."""
    n = train_tokens // spec.sequence_length
    if n < 1:
        raise DataError(f"a train split of {train_tokens} tokens holds no window of {spec.sequence_length}")
    return spec.steps * spec.batch_size / n


def _starts(spec, step: int, dataset: Dataset) -> np.ndarray:
    length = spec.sequence_length
    train = dataset.splits["train"]
    if spec.sampling == "replacement":
        return np.random.default_rng([spec.seed, step]).integers(0, len(train) - length + 1, size=spec.batch_size)
    n = len(train) // length
    g = step * spec.batch_size + np.arange(spec.batch_size, dtype=np.int64)
    out = np.empty(spec.batch_size, dtype=np.int64)
    for epoch in np.unique(g // n):  # a batch may straddle two epochs
        rows = g // n == epoch
        out[rows] = permute(g[rows] % n, n, spec.seed, int(epoch)) * length
    return out


def _read(stream: Stream, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray | None]:
    rows = [stream.read(int(s), length) for s in starts]
    tokens = np.stack([r[0] for r in rows])
    mask = np.stack([r[1] for r in rows]) if stream.masked else None
    return tokens, mask


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


def _to_batch(spec, tokens: np.ndarray, mask: np.ndarray | None, key: list[int], dataset: Dataset) -> dict:
    import torch

    if spec.model.family == "bert":
        inputs, labels = _mlm(tokens, key + [MASK_KEY], spec.mlm_probability, dataset.vocab_size, dataset.special)
    else:  # the GPT shifts labels inside, as Hugging Face does; -100 (ignore_index) outside responses
        inputs, labels = tokens, tokens if mask is None else np.where(mask, tokens, -100)
    return {"input_ids": torch.from_numpy(np.ascontiguousarray(inputs)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels))}


def batch(spec, step: int, rank: int, world: int, dataset: Dataset) -> dict:
    """Rank `rank`'s slice of the global training batch of `step`: a pure function of (seed, step, rank, world).

    Returns {"input_ids": LongTensor[b, T], "labels": LongTensor[b, T]} with b = batch_size / world.
    """
    if world < 1 or not 0 <= rank < world or spec.batch_size % world:
        raise DataError(f"rank {rank} of world {world}: world must divide batch_size {spec.batch_size}")
    per = spec.batch_size // world
    key = [spec.seed, step]
    starts = _starts(spec, step, dataset)
    if spec.model.family == "bert":  # masking is keyed on the global batch: mask it all, keep this rank's rows
        tokens, _ = _read(dataset.splits["train"], starts, spec.sequence_length)
        out = _to_batch(spec, tokens, None, key, dataset)
        return {k: v[rank * per:(rank + 1) * per] for k, v in out.items()}
    tokens, mask = _read(dataset.splits["train"], starts[rank * per:(rank + 1) * per], spec.sequence_length)
    return _to_batch(spec, tokens, mask, key, dataset)


def eval_batch(spec, index: int, dataset: Dataset, split: str = "val") -> dict:
    """The `index`-th held-out batch: fixed for a run (seed), independent of training progress."""
    key = [spec.seed, EVAL_KEY, index]
    stream = dataset.splits[split]
    starts = np.random.default_rng(key).integers(0, len(stream) - spec.sequence_length + 1, size=spec.micro_batch)
    tokens, mask = _read(stream, starts, spec.sequence_length)
    return _to_batch(spec, tokens, mask, key, dataset)
