"""The function-shards settings of a run (a blueprint's `functions:` section), stored with the run.

Pure Python, no torch. Written once into the store as `shards.json` (create-if-absent, like
`spec.json`); a different config for an existing run is refused, so every shard and reducer of
every round agrees on K, the sync mode and the exchange dtype.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import SHARDS_CONFIG_KEY as CONFIG_KEY
from relaytrain_runtime.spec import Problem, SpecError, choices, field_type_problems, field_types, settings_problems
from relaytrain_runtime.store import NotFound, Store

MAX_SHARDS = 1000  # a Step Functions inline Map runs 40 at once, Cloud Workflows parallel steps allow more


SYNC_MODES = ("gradients", "diloco")
EXCHANGE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}  # bytes per exchanged value of each exchange dtype
EXCHANGE_DTYPES = tuple(EXCHANGE_BYTES)
INNER_STATES = ("keep", "reset")


class ShardsConfigError(RelayError):
    """The run's stored config is missing, unreadable or differs (bad values raise SpecError)."""


@dataclass(frozen=True)
class ShardsConfig:
    shards: int = 4  # K function invocations per round
    sync: str = "gradients"  # "gradients" (exact data parallelism) or "diloco" (H local steps, outer Nesterov)
    local_steps: int = 8  # diloco: inner AdamW steps H per round
    exchange_dtype: str = "fp32"  # fp32 | bf16 | fp16 ("" = fp32)
    outer_lr: float = 0.7  # diloco outer step
    outer_momentum: float = 0.9
    inner_state: str = "keep"  # diloco: "keep" each shard's AdamW moments across rounds (in the store), or "reset"
    round_deadline_s: int = 0  # orchestrators: stragglers past it are retried (0 = the function timeout)

    CHOICES: ClassVar[dict[str, tuple]] = {"sync": SYNC_MODES, "exchange_dtype": EXCHANGE_DTYPES,
                                           "inner_state": INNER_STATES}

    def __post_init__(self) -> None:
        if not self.exchange_dtype:
            object.__setattr__(self, "exchange_dtype", "fp32")
        problems = self.problems()
        if problems:
            raise SpecError(problems, "function-shards config")

    def problems(self) -> list[Problem]:
        """Every value that cannot run, as (field, message) pairs: types from the annotations, then ranges."""
        out = field_type_problems(self)
        wrong = {name for name, _ in out}

        def need(name: str, rule: str, ok: Callable[[], bool]) -> None:
            if name not in wrong and not ok():
                out.append((name, f"must {rule}, got {getattr(self, name)!r}"))

        need("shards", f"be 1..{MAX_SHARDS}", lambda: 1 <= self.shards <= MAX_SHARDS)
        need("sync", "be " + choices(SYNC_MODES), lambda: self.sync in SYNC_MODES)
        need("local_steps", "be >= 1", lambda: self.local_steps >= 1)
        need("exchange_dtype", "be " + choices(EXCHANGE_DTYPES), lambda: self.exchange_dtype in EXCHANGE_DTYPES)
        need("outer_lr", "be in (0, 10]", lambda: 0 < self.outer_lr <= 10)
        need("outer_momentum", "be in [0, 1)", lambda: 0 <= self.outer_momentum < 1)
        need("inner_state", "be " + choices(INNER_STATES), lambda: self.inner_state in INNER_STATES)
        need("round_deadline_s", "be >= 0 (0 = the function timeout)", lambda: self.round_deadline_s >= 0)
        return out

    @property
    def dtype(self) -> str:
        return self.exchange_dtype

    @property
    def exchange_bytes(self) -> int:
        """Bytes per value in the round's exchange objects."""
        return EXCHANGE_BYTES[self.exchange_dtype]

    @property
    def steps_per_round(self) -> int:
        return self.local_steps if self.sync == "diloco" else 1

    def rounds(self, total_steps: int) -> int:
        """Rounds to train `total_steps` optimizer steps (diloco: the last round may be shorter)."""
        return math.ceil(total_steps / self.steps_per_round)

    def round_steps(self, rnd: int, total_steps: int) -> tuple[int, int]:
        """The [first, stop) global step range that round `rnd` covers."""
        first = rnd * self.steps_per_round
        return first, min(first + self.steps_per_round, total_steps)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.shards:
            raise ShardsConfigError(f"training.batch_size {batch_size} must be divisible by functions.shards "
                                    f"{self.shards} (each shard takes an equal slice of the global batch)")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> ShardsConfig:
        if not isinstance(data, dict):
            raise ShardsConfigError("function-shards config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = [(k, f"unknown field (known: {', '.join(sorted(known))})")
                   for k in sorted(set(data) - known, key=str)]
        if unknown:
            raise SpecError(unknown, "function-shards config")
        hints = field_types(cls)
        return cls(**{k: float(v) if hints[k] is float and type(v) is int else v for k, v in data.items()})

    check = classmethod(settings_problems)  # the (field, message) pairs of a mapping


def init_config(store: Store, config: ShardsConfig) -> None:
    """Write the run's shards config once; an identical config is fine, a different one is refused."""
    if store.create(CONFIG_KEY, config.to_json().encode()):
        return
    existing = load_config(store)
    if existing != config:
        diff = [f"{k}: {v!r} -> {getattr(config, k)!r}" for k, v in existing.to_dict().items()
                if getattr(config, k) != v]
        raise ShardsConfigError(f"{store.url}/{CONFIG_KEY} holds a different function-shards config "
                                f"({'; '.join(diff)}); use a new store URL for a new run")


def load_config(store: Store) -> ShardsConfig:
    try:
        raw = store.read(CONFIG_KEY)
    except NotFound:
        raise ShardsConfigError(f"{store.url} has no {CONFIG_KEY}: initialise the run with its functions: settings "
                                "(pass \"functions\" in the event or `--shards/--sync` to "
                                "`relaytrain-runtime shard`)") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ShardsConfigError(f"{store.url}/{CONFIG_KEY} is not valid JSON ({exc})") from None
    return ShardsConfig.from_dict(data)
