"""Typed records of a run's store and of what workers report, each with one validating `from_dict`.

    CommitManifest   baton/<gen>.json: a commit (its objects with size and sha256, step, loss, ...)
    TrainingMeta     the JSON state inside a checkpoint (step, tokens, rng, accrued cost, evaluation)
    WorkerStatus     what a leg or node returns and writes to legs/<gen>-<leg>.json (the kit reads it)
    ShardStatus      what one function shard returns
    EvalRecord       eval/<gen>.json: the one shape of an evaluation, written by `write_eval` only

`X.from_dict(data)` returns the record or raises `RecordError` naming the record, the field and the
accepted form (missing keys, wrong types, a checkpoint object outside the run's ckpt/ prefix). Keys
a record does not know are ignored, so a worker can read what a newer or older worker wrote.
`x.to_dict()` gives the JSON form back. Pure Python; no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import CKPT_PREFIX, eval_key

NUMBER = (int, float)
_REQUIRED = object()


class RecordError(RelayError):
    """A record (a manifest, a checkpoint's state, a status, an evaluation) is malformed."""


def _f(kinds, default=_REQUIRED, *, minimum=None, nullable=False):
    """A record field: accepted JSON types, default (absent: required), lower bound, whether null is allowed."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    meta = {"kinds": kinds, "minimum": minimum, "nullable": nullable}
    if default is _REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _check(record: str, name: str, value, meta: dict):
    if value is None and meta["nullable"]:
        return None
    kinds = meta["kinds"]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds) + (" or null" if meta["nullable"] else "")
        raise RecordError(f"{record}: field {name!r} must be {names}, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, float) and not math.isfinite(value) and name not in ("perplexity", "loss", "val_loss"):
        raise RecordError(f"{record}: field {name!r} must be finite, got {value!r}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise RecordError(f"{record}: field {name!r} must be >= {meta['minimum']}, got {value!r}")
    return value


class Record:
    """Shared from_dict/to_dict of the records below (dataclasses whose fields carry `_f` metadata)."""

    @classmethod
    def from_dict(cls, data, where: str | None = None):
        record = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{record}: must be a JSON object, got {type(data).__name__}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{record}: field {f.name!r} is missing")
                continue
            values[f.name] = _check(record, f.name, data[f.name], f.metadata)
        out = cls(**values)
        out.validate(record)
        return out

    def validate(self, record: str) -> None:
        """Checks across fields (records override)."""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def perplexity(loss: float | None) -> float | None:
    """exp(loss), inf past float range (a diverged run's loss)."""
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else float("inf")


# ------------------------------------------------------------------------------------------ commits


@dataclass
class ObjectRef(Record):
    key: str = _f(str)
    size: int = _f(int, minimum=0)
    sha256: str = _f(str)

    def validate(self, record: str) -> None:
        parts = self.key.split("/")
        if not self.key.startswith(CKPT_PREFIX) or ".." in parts or "" in parts or "\\" in self.key:
            raise RecordError(f"{record}: key {self.key!r} is outside the run's {CKPT_PREFIX} objects")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise RecordError(f"{record}: sha256 must be 64 lowercase hex digits, got {self.sha256!r:.80}")


CHECKPOINT_OBJECTS = ("weights", "optimizer", "state")


@dataclass
class CommitManifest(Record):
    """baton/<gen>.json. `objects` maps each of CHECKPOINT_OBJECTS to an ObjectRef; val_loss and
    perplexity are present on the commits that were evaluated."""

    gen: int = _f(int, minimum=1)
    parent: int = _f(int, minimum=0)
    leg_id: str = _f(str)
    objects: dict = _f(dict)
    weights_sha256: str = _f(str)
    step: int = _f(int, minimum=0)
    tokens: int = _f(int, minimum=0)
    loss: float | None = _f(NUMBER, nullable=True)
    done: bool = _f(bool)
    cost_usd: float = _f(NUMBER, 0.0, minimum=0)
    created: float = _f(NUMBER, 0.0)
    rng: dict | None = _f(dict, None, nullable=True)
    spec_digest: str | None = _f(str, None, nullable=True)
    data: dict = _f(dict, {})
    save_seconds: float = _f(NUMBER, 0.0, minimum=0)
    val_loss: float | None = _f(NUMBER, None, nullable=True)
    perplexity: float | None = _f(NUMBER, None, nullable=True)

    def validate(self, record: str) -> None:
        missing = [name for name in CHECKPOINT_OBJECTS if name not in self.objects]
        if missing:
            raise RecordError(f"{record}: objects lack {', '.join(missing)} "
                              f"(a commit has {', '.join(CHECKPOINT_OBJECTS)})")
        self.objects = {name: ObjectRef.from_dict(ref, f"{record}: objects.{name}")
                        if not isinstance(ref, ObjectRef) else ref for name, ref in self.objects.items()}
        if self.weights_sha256 != self.objects["weights"].sha256:
            raise RecordError(f"{record}: weights_sha256 differs from objects.weights.sha256")
        if self.parent >= self.gen:
            raise RecordError(f"{record}: parent {self.parent} must be below gen {self.gen}")

    def to_dict(self) -> dict:
        out = {**super().to_dict(), "objects": {k: v.to_dict() for k, v in self.objects.items()}}
        return {k: v for k, v in out.items() if v is not None or k not in ("val_loss", "perplexity")}


# ------------------------------------------------------------------------------------- training meta


@dataclass
class TrainingMeta(Record):
    """A checkpoint's JSON state: where the run is. The metrics history lives in the metrics stream."""

    step: int = _f(int, 0, minimum=0)
    tokens: int = _f(int, 0, minimum=0)
    loss: float | None = _f(NUMBER, None, nullable=True)
    done: bool = _f(bool, False)
    cost_usd: float = _f(NUMBER, 0.0, minimum=0)
    timings: dict = _f(dict, {})
    spec_digest: str | None = _f(str, None, nullable=True)
    rng: dict | None = _f(dict, None, nullable=True)
    val_loss: float | None = _f(NUMBER, None, nullable=True)  # the newest evaluation's
    perplexity: float | None = _f(NUMBER, None, nullable=True)
    eval_step: int = _f(int, 0, minimum=0)  # step of the newest evaluation (0: none yet)
    best_gen: int = _f(int, 0, minimum=0)  # the commit with the lowest val_loss so far (kept from pruning)
    best_val_loss: float | None = _f(NUMBER, None, nullable=True)
    shards_round: int | None = _f(int, None, nullable=True, minimum=0)  # function shards: next round
    shards_parent_baton: str | None = _f(str, None, nullable=True)
    scaler: dict | None = _f(dict, None, nullable=True)  # fp16-mixed: the gradient scaler's state
    data: dict | None = _f(dict, None, nullable=True)  # {epoch, position, tokens_seen}: data.position

    def to_dict(self) -> dict:
        return {k: v for k, v in super().to_dict().items() if v is not None or k in ("loss", "rng", "spec_digest")}


# ----------------------------------------------------------------------------------------- statuses


@dataclass
class WorkerStatus(Record):
    """A leg's or node's result: returned to its caller and written to legs/<gen>-<leg>.json.

    Fields that do not apply (a leg has no `commits`, a node no `save_estimate_s`) are None and
    left out of the JSON form."""

    status: str = _f(str)  # ok | done | lost_race
    done: bool = _f(bool)
    step: int = _f(int, minimum=0)
    gen: int = _f(int, minimum=0)
    loss: float | None = _f(NUMBER, nullable=True)
    tokens: int = _f(int, minimum=0)
    cost_usd: float = _f(NUMBER, minimum=0)
    leg_steps: int = _f(int, minimum=0)
    leg_id: str = _f(str)
    store: str = _f(str)
    seconds: dict = _f(dict)  # start (legs), load, train, save
    warnings: list = _f(list, [])
    threads: int | None = _f(int, None, nullable=True)
    save_estimate_s: float | None = _f(NUMBER, None, nullable=True)
    weights_sha256: str | None = _f(str, None, nullable=True)
    val_loss: float | None = _f(NUMBER, None, nullable=True)
    perplexity: float | None = _f(NUMBER, None, nullable=True)
    world: int | None = _f(int, None, nullable=True)  # nodes
    device: str | None = _f(str, None, nullable=True)
    commits: int | None = _f(int, None, nullable=True)
    stopped_by: str | None = _f(str, None, nullable=True)
    throughput: dict | None = _f(dict, None, nullable=True)  # tokens/s, MFU, peak memory (precision.node_throughput)
    data: dict | None = _f(dict, None, nullable=True)  # {epoch, position, tokens_seen} after `step`

    STATUSES = ("ok", "done", "lost_race")

    def validate(self, record: str) -> None:
        if self.status not in self.STATUSES:
            raise RecordError(f"{record}: status must be one of {', '.join(self.STATUSES)}, got {self.status!r}")

    def to_dict(self) -> dict:
        out = super().to_dict()
        node = self.commits is not None
        return {k: v for k, v in out.items() if v is not None or k == "loss" or (node and k == "stopped_by")}


@dataclass
class ShardStatus(Record):
    """One function shard's result (`ok`: its vector is written; `stale`/`done`: nothing to do)."""

    status: str = _f(str)
    round: int = _f(int, minimum=0)
    shard: int = _f(int, minimum=0)
    baton: str = _f(str)
    current_round: int = _f(int, minimum=0)
    step: int = _f(int, minimum=0)
    done: bool = _f(bool)
    loss: float | None = _f(NUMBER, nullable=True)
    bytes_written: int | None = _f(int, None, nullable=True)
    state_bytes: dict | None = _f(dict, None, nullable=True)
    seconds: dict | None = _f(dict, None, nullable=True)

    def to_dict(self) -> dict:
        return {k: v for k, v in super().to_dict().items() if v is not None or k == "loss"}


# ---------------------------------------------------------------------------------------- evaluation


@dataclass
class EvalRecord(Record):
    """eval/<gen>.json: the validation loss of commit `gen` over `batches` fixed held-out batches."""

    gen: int = _f(int, minimum=1)
    step: int = _f(int, minimum=0)
    loss: float = _f(NUMBER)
    perplexity: float = _f(NUMBER)
    batches: int = _f(int, minimum=1)
    split: str = _f(str, "val")
    weights_sha256: str | None = _f(str, None, nullable=True)


def write_eval(store, record: EvalRecord) -> str:
    """Write eval/<gen>.json (the one writer of evaluation records); returns its key."""
    key = eval_key(record.gen)
    store.write(key, (json.dumps(record.to_dict(), indent=1) + "\n").encode())
    return key


def read_eval(store, gen: int) -> EvalRecord:
    try:
        data = json.loads(store.read(eval_key(gen)))
    except ValueError as exc:
        raise RecordError(f"{eval_key(gen)} is not valid JSON ({exc})") from None
    return EvalRecord.from_dict(data, eval_key(gen))
