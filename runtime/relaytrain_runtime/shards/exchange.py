"""The exchange layer: how stateless shards meet through the store.

One round of K shards is a reduce-scatter through object storage:

    shard k   ->  rounds/<round>-<baton>/s/<j>/<k>   for every piece j (its vector cut into K pieces)
    reducer j ->  rounds/<round>-<baton>/r/<j>        the weighted mean of the K objects of piece j
    commit    <-  all K reduced pieces, assembled into one fp32 vector

Each shard writes N values, each reducer reads N and writes N/K, the commit reads N: the
traffic per function is O(N) whatever K is, and the K reducers can run in parallel.

Every object carries a header naming the run (spec digest), the round, the parent baton's
digest, the shard, the piece, the payload's length and CRC-32; readers check all of them, so a round
never mixes vectors computed from two different batons, and a truncated or foreign object is
refused. Objects live under a key that includes the baton digest, so a stale shard from another
baton writes where nobody reads. `sweep` deletes the rounds up to a committed one.

Payloads travel in fp32, bf16 or fp16. fp16 objects are scaled per object (absmax -> 2**15) so
small gradients do not flush to zero; reduction always happens in fp32.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.store import NotFound, Store

MAGIC = b"RTXC1\n"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FP16_TARGET = 2.0**15  # fp16 payloads are scaled so their largest magnitude lands here (max is 65504)
from relaytrain_runtime.contract.keys import ROUNDS_PREFIX as ROUNDS  # noqa: E402


class ExchangeError(RelayError):
    """An exchange object is missing, corrupt, or belongs to another run, round or baton."""


def piece_bounds(numel: int, pieces: int) -> list[tuple[int, int]]:
    """Cut [0, numel) into `pieces` contiguous ranges whose sizes differ by at most one."""
    if pieces < 1:
        raise ExchangeError(f"pieces must be >= 1, got {pieces}")
    base, extra = divmod(numel, pieces)
    out, start = [], 0
    for j in range(pieces):
        stop = start + base + (1 if j < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def encode(vector: torch.Tensor, dtype: str) -> tuple[memoryview, float]:
    """fp32 1-D vector -> (payload bytes in `dtype`, scale). Decode multiplies by 1/scale.

    The payload is a view of the cast tensor (no copy: large vectors are hundreds of MB)."""
    if dtype not in DTYPES:
        raise ExchangeError(f"exchange dtype {dtype!r} is not supported (choose one of: {', '.join(DTYPES)})")
    v = vector.detach().to(torch.float32).contiguous().view(-1)
    scale = 1.0
    if dtype == "fp16" and v.numel():
        amax = float(v.abs().max())
        if not torch.isfinite(torch.tensor(amax)):
            raise ExchangeError("cannot encode a vector with inf/nan values")
        if amax > 0:
            scale = FP16_TARGET / amax
        v = v * scale
    t = v.to(DTYPES[dtype])
    # bf16 has no numpy dtype: ship its raw 16-bit words
    raw = t.view(torch.int16) if dtype == "bf16" else t
    return memoryview(raw.numpy()).cast("B"), scale


def decode(payload, dtype: str, numel: int, scale: float) -> torch.Tensor:
    """Inverse of `encode` (any bytes-like payload): a new fp32 1-D tensor."""
    if dtype not in DTYPES:
        raise ExchangeError(f"exchange dtype {dtype!r} is not supported (choose one of: {', '.join(DTYPES)})")
    width = DTYPES[dtype].itemsize
    if len(payload) != numel * width:
        raise ExchangeError(f"payload has {len(payload)} bytes, expected {numel * width} ({numel} x {dtype})")
    if not numel:
        return torch.zeros(0, dtype=torch.float32)
    buf = bytearray(payload)  # our own writable copy: the result never aliases the store's bytes
    if dtype == "bf16":
        t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16)
    else:
        t = torch.frombuffer(buf, dtype=DTYPES[dtype])
    out = t.to(torch.float32)
    if scale != 1.0:
        out = out / scale
    return out


def pack(header: dict, vector: torch.Tensor, dtype: str) -> bytes:
    """One self-describing object: MAGIC, header length, JSON header, payload."""
    payload, scale = encode(vector, dtype)
    head = dict(header, dtype=dtype, numel=vector.numel(), scale=scale, bytes=len(payload), crc32=zlib.crc32(payload))
    blob = json.dumps(head, sort_keys=True).encode()
    return b"".join((MAGIC, struct.pack("<I", len(blob)), blob, payload))


def unpack(data: bytes, where: str = "object") -> tuple[dict, torch.Tensor]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ExchangeError(f"{where} is not a relaytrain exchange object (bad magic)")
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        head = json.loads(data[start:start + n])
    except ValueError:
        raise ExchangeError(f"{where} has a corrupt header") from None
    payload = memoryview(data)[start + n:]
    if len(payload) != head.get("bytes"):
        raise ExchangeError(f"{where} is truncated ({len(payload)} of {head.get('bytes')} payload bytes)")
    if zlib.crc32(payload) != head.get("crc32"):
        raise ExchangeError(f"{where} is corrupt (payload checksum mismatch)")
    return head, decode(payload, head["dtype"], head["numel"], head["scale"])


@dataclass(frozen=True)
class Round:
    """Identity of one round: every object of the round carries these fields."""

    run: str  # the run spec's digest
    round: int
    baton: str  # digest of the parent baton commit the shards started from
    shards: int  # K
    kind: str = "grad"  # "grad" (sync: gradients) or "delta" (sync: diloco)

    def __post_init__(self) -> None:
        if self.round < 0:
            raise ExchangeError(f"round must be >= 0, got {self.round}")
        if self.shards < 1:
            raise ExchangeError(f"shards must be >= 1, got {self.shards}")

    @property
    def prefix(self) -> str:
        return f"{ROUNDS}{self.round:08d}-{self.baton[:16]}/"

    def shard_key(self, piece: int, shard: int) -> str:
        return f"{self.prefix}s/{piece:04d}/{shard:04d}"

    def reduced_key(self, piece: int) -> str:
        return f"{self.prefix}r/{piece:04d}"

    def identity(self) -> dict:
        return {"run": self.run, "round": self.round, "baton": self.baton, "shards": self.shards, "kind": self.kind}

    def check(self, head: dict, where: str, **expected) -> None:
        """Refuse an object whose header names another run, round, baton, shard or piece."""
        for field, want in {**self.identity(), **expected}.items():
            got = head.get(field)
            if got != want:
                raise ExchangeError(f"{where}: {field} is {got!r}, expected {want!r} "
                                    "(an object from another run, round or baton; it is ignored)")


class Exchange:
    """Reads and writes one round's objects in a store."""

    def __init__(self, store: Store, rnd: Round, dtype: str = "fp32"):
        if dtype not in DTYPES:
            raise ExchangeError(f"exchange dtype {dtype!r} is not supported (choose one of: {', '.join(DTYPES)})")
        self.store, self.round, self.dtype = store, rnd, dtype

    # --- shard side ---------------------------------------------------------------------------
    def put_shard(self, shard: int, vector: torch.Tensor, meta: dict) -> int:
        """Write shard `shard`'s vector as K piece objects. Returns the bytes written.

        `meta` (JSON) travels with every piece; `meta["weight"]` (default 1) weighs the shard in
        the mean. Writes overwrite: a retried or duplicated shard of the same baton rewrites the
        same content, so a late duplicate changes nothing.
        """
        K = self.round.shards
        if not 0 <= shard < K:
            raise ExchangeError(f"shard index {shard} is out of range for {K} shards (0..{K - 1})")
        vector = vector.detach().to(torch.float32).view(-1)
        total = 0
        for j, (a, b) in enumerate(piece_bounds(vector.numel(), K)):
            head = dict(self.round.identity(), shard=shard, piece=j, start=a, stop=b, total=vector.numel(), meta=meta)
            blob = pack(head, vector[a:b], self.dtype)
            self.store.write(self.round.shard_key(j, shard), blob)
            total += len(blob)
        return total

    def present(self, piece: int = 0) -> list[int]:
        """Shards whose object for `piece` exists (cheap listing, contents unchecked)."""
        prefix = f"{self.round.prefix}s/{piece:04d}/"
        return sorted(int(k[len(prefix):]) for k in self.store.list(prefix) if k[len(prefix):].isdigit())

    # --- reducer side -------------------------------------------------------------------------
    def reduce_piece(self, piece: int, reducer: dict | None = None) -> dict:
        """Weighted mean of piece `piece` over all K shards, written as one fp32 object.

        `reducer` (JSON: e.g. the reducer's cost) travels in the reduced object's header.

        Returns {"status": "ok", "bytes_read", "bytes_written"} or, when shard objects are missing
        or invalid, {"status": "missing", "missing": [shard, ...], "problems": [...]} and writes nothing.
        """
        K = self.round.shards
        if not 0 <= piece < K:
            raise ExchangeError(f"piece {piece} is out of range for {K} shards (0..{K - 1})")
        acc, weight, metas, read, missing, problems, span = None, 0.0, {}, 0, [], [], None
        for k in range(K):
            key = self.round.shard_key(piece, k)
            try:
                data = self.store.read(key)
                head, vec = unpack(data, key)
                self.round.check(head, key, shard=k, piece=piece)
            except NotFound:
                missing.append(k)
                continue
            except ExchangeError as exc:
                missing.append(k)
                problems.append(str(exc))
                continue
            here = (head["start"], head["stop"], head["total"])
            if span is not None and here != span:
                missing.append(k)
                problems.append(f"{key}: covers {here}, other shards cover {span}")
                continue
            span = here
            read += len(data)
            w = float(head["meta"].get("weight", 1.0))
            acc = vec.mul_(w) if acc is None else acc.add_(vec, alpha=w)  # decode returned our own copy
            weight += w
            metas[str(k)] = head["meta"]
        if missing:
            return {"status": "missing", "missing": missing, "problems": problems, "bytes_read": read}
        mean = acc.div_(weight)
        head = dict(self.round.identity(), piece=piece, start=span[0], stop=span[1], total=span[2],
                    weight=weight, metas=metas, reducer=reducer or {})
        blob = pack(head, mean, "fp32")
        self.store.write(self.round.reduced_key(piece), blob)
        return {"status": "ok", "bytes_read": read, "bytes_written": len(blob)}

    def reduced_present(self) -> list[int]:
        prefix = f"{self.round.prefix}r/"
        return sorted(int(k[len(prefix):]) for k in self.store.list(prefix) if k[len(prefix):].isdigit())

    # --- commit side --------------------------------------------------------------------------
    def assemble(self) -> tuple[torch.Tensor, dict]:
        """All K reduced pieces -> (fp32 mean vector, info) where info holds `metas` ({shard: meta}),
        `reducers` (each piece's reducer dict) and `bytes_read`.

        Raises ExchangeError naming the first missing or invalid piece.
        """
        K = self.round.shards
        parts, metas, read, total, reducers = [], None, 0, None, []
        for j in range(K):
            key = self.round.reduced_key(j)
            try:
                data = self.store.read(key)
            except NotFound:
                raise ExchangeError(
                    f"{key} is missing: piece {j} of round {self.round.round} is not reduced yet"
                ) from None
            head, vec = unpack(data, key)
            self.round.check(head, key, piece=j)
            if total is None:
                total, metas = head["total"], head["metas"]
            expect = piece_bounds(total, K)[j]
            if (head["start"], head["stop"], head["total"]) != (*expect, total):
                raise ExchangeError(f"{key}: covers {head['start']}..{head['stop']} of {head['total']}, "
                                    f"expected {expect[0]}..{expect[1]} of {total}")
            parts.append(vec)
            reducers.append(head.get("reducer", {}))
            read += len(data)
        return torch.cat(parts), {
            "metas": {int(k): v for k, v in metas.items()},
            "reducers": reducers,
            "bytes_read": read,
        }


def sweep(store: Store, up_to_round: int) -> int:
    """Delete every exchange object of rounds <= `up_to_round` (any baton). Returns the count."""
    n = 0
    for key in store.list(ROUNDS):
        head = key[len(ROUNDS):].split("/", 1)[0]
        number = head.split("-", 1)[0]
        if number.isdigit() and int(number) <= up_to_round:
            store.delete(key)
            n += 1
    return n
