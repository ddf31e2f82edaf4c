"""The function-shards settings of a run (a blueprint's `functions:` section), stored with the run.

Pure Python, no torch. Written once into the store as `shards.json` (create-if-absent, like
`spec.json`); a different config for an existing run is refused, so every shard and reducer of
every round agrees on K, the sync mode and the exchange dtype.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from relaytrain_runtime import RelayError
from relaytrain_runtime.store import NotFound, Store

from relaytrain_runtime.contract.keys import SHARDS_CONFIG_KEY as CONFIG_KEY  # noqa: E402
MAX_SHARDS = 1000  # a Step Functions inline Map runs 40 at once, Cloud Workflows parallel steps allow more


class ShardsConfigError(RelayError):
    pass


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

    def __post_init__(self) -> None:
        if not self.exchange_dtype:
            object.__setattr__(self, "exchange_dtype", "fp32")
        problems = []
        if not 1 <= self.shards <= MAX_SHARDS:
            problems.append(f"shards: must be 1..{MAX_SHARDS}, got {self.shards}")
        if self.sync not in ("gradients", "diloco"):
            problems.append(f"sync: must be gradients or diloco, got {self.sync!r}")
        if self.local_steps < 1:
            problems.append(f"local_steps: must be >= 1, got {self.local_steps}")
        if self.exchange_dtype not in ("", "fp32", "bf16", "fp16"):
            problems.append(f"exchange_dtype: must be fp32, bf16 or fp16, got {self.exchange_dtype!r}")
        if not self.outer_lr > 0:
            problems.append(f"outer_lr: must be > 0, got {self.outer_lr}")
        if not 0 <= self.outer_momentum < 1:
            problems.append(f"outer_momentum: must be in [0, 1), got {self.outer_momentum}")
        if self.inner_state not in ("keep", "reset"):
            problems.append(f"inner_state: must be keep or reset, got {self.inner_state!r}")
        if self.round_deadline_s < 0:
            problems.append(f"round_deadline_s: must be >= 0, got {self.round_deadline_s}")
        if problems:
            raise ShardsConfigError("invalid function-shards config: " + "; ".join(problems))

    @property
    def dtype(self) -> str:
        return self.exchange_dtype

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
    def from_dict(cls, data: dict) -> "ShardsConfig":
        if not isinstance(data, dict):
            raise ShardsConfigError("function-shards config must be a JSON object")
        known = {f.name for f in fields(cls)}
        # a blueprint's functions: section also carries deployment fields (memory, vcpu, ...)
        return cls(**{k: v for k, v in data.items() if k in known})


def init_config(store: Store, config: ShardsConfig) -> None:
    """Write the run's shards config once; an identical config is fine, a different one is refused."""
    if store.create(CONFIG_KEY, config.to_json().encode()):
        return
    existing = load_config(store)
    if existing != config:
        diff = [f"{k}: {v!r} -> {getattr(config, k)!r}" for k, v in existing.to_dict().items() if getattr(config, k) != v]
        raise ShardsConfigError(f"{store.url}/{CONFIG_KEY} holds a different function-shards config "
                                f"({'; '.join(diff)}); use a new store URL for a new run")


def load_config(store: Store) -> ShardsConfig:
    try:
        raw = store.read(CONFIG_KEY)
    except NotFound:
        raise ShardsConfigError(f"{store.url} has no {CONFIG_KEY}: initialise the run with its functions: settings "
                                "(pass \"functions\" in the event or `--shards/--sync` to `relaytrain-runtime shard`)") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ShardsConfigError(f"{store.url}/{CONFIG_KEY} is not valid JSON ({exc})") from None
    return ShardsConfig.from_dict(data)
