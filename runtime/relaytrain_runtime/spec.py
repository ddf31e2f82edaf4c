"""The run spec: everything that defines a training run, written into the store once.

Pure Python (no torch). A blueprint's `training:` section is exactly this spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from relaytrain_runtime import RelayError
from relaytrain_runtime.presets import resolve_config

SPEC_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    preset: str = "tiny-gpt"
    steps: int = 200
    seed: int = 0
    batch_size: int = 16  # global batch, in sequences per optimizer step
    seq_len: int = 0  # 0 = the preset's n_positions
    micro_batch_size: int = 0  # 0 = no gradient accumulation (micro batch = batch)
    dataset: str = "stdlib"  # "stdlib" (Python's own sources, built locally) or a store URL of a prepared dataset
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    mlm_probability: float = 0.15  # bert presets only
    keep_last: int = 3  # checkpoints kept in the store
    eval_batches: int = 8  # held-out batches for validation loss
    model_shape: dict = field(default_factory=dict)  # overrides of the preset's fields, or a full config (family...)
    init_from: str = ""  # a pretrained HF model directory: local path, file://, s3:// or gs:// URL ("" = random init)
    init_sha256: str = ""  # digest of the pretrained directory, filled in at init (its copy: base/<sha256>/)
    finetune: str = "full"  # full | lora
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = ""  # comma-separated module names ("" = the family's default)
    base_dtype: str = "float32"  # lora: dtype of the frozen base (float32 | bfloat16)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise RelayError("invalid run spec: " + "; ".join(problems))

    def problems(self) -> list[str]:
        out = self._finetune_problems()
        if self.init_from and "family" not in self.model_shape:
            return out  # the shape is read from the pretrained directory at init (then model_shape is complete)
        cfg, problems = resolve_config(self.preset, self.model_shape)
        if cfg is None or problems:
            return out + problems
        if self.steps < 1:
            out.append(f"steps: must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            out.append(f"batch_size: must be >= 1, got {self.batch_size}")
        if not 0 <= self.seq_len <= cfg.n_positions:
            out.append(f"seq_len: must be 1..{cfg.n_positions} for {self.preset} (0 = {cfg.n_positions}), got {self.seq_len}")
        mb = self.micro_batch_size
        if mb < 0 or (mb and self.batch_size % mb):
            out.append(f"micro_batch_size: must divide batch_size {self.batch_size}, got {mb}")
        if self.schedule not in ("cosine", "linear", "constant"):
            out.append(f"schedule: must be cosine, linear or constant, got {self.schedule!r}")
        if not self.lr > 0:
            out.append(f"lr: must be > 0, got {self.lr}")
        if self.keep_last < 1:
            out.append(f"keep_last: must be >= 1, got {self.keep_last}")
        return out

    def _finetune_problems(self) -> list[str]:
        out = []
        if self.finetune not in ("full", "lora"):
            out.append(f"finetune: must be full or lora, got {self.finetune!r}")
        if self.lora_rank < 1:
            out.append(f"lora_rank: must be >= 1, got {self.lora_rank}")
        if not self.lora_alpha > 0:
            out.append(f"lora_alpha: must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            out.append(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.base_dtype not in ("float32", "bfloat16"):
            out.append(f"base_dtype: must be float32 or bfloat16, got {self.base_dtype!r}")
        elif self.base_dtype != "float32" and self.finetune != "lora":
            out.append(f"base_dtype: {self.base_dtype} needs finetune=lora (a full fine-tune trains in float32)")
        return out

    @property
    def model(self):
        cfg, problems = resolve_config(self.preset, self.model_shape)
        if cfg is None:
            raise RelayError("run spec has no model shape yet: " + "; ".join(problems))
        return cfg

    @property
    def sequence_length(self) -> int:
        return self.seq_len or self.model.n_positions

    @property
    def micro_batch(self) -> int:
        return self.micro_batch_size or self.batch_size

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.sequence_length

    def to_dict(self) -> dict:
        return {"spec_version": SPEC_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        data = dict(data)
        version = data.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise RelayError(f"run spec version {version} is not supported by this runtime (expected {SPEC_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RelayError(f"run spec has unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{k: _coerce(k, v, cls._types()[k]) for k, v in data.items()})

    @classmethod
    def _types(cls) -> dict[str, str]:
        return {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(cls)}

    @classmethod
    def from_json(cls, text: str | bytes) -> "RunSpec":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RelayError(f"run spec is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RelayError("run spec must be a JSON object")
        return cls.from_dict(data)


def _coerce(name: str, value, type_name: str):
    """JSON producers differ on numbers (Workflows, YAML, Pulumi send 1 or 1.0 alike): normalise them so the
    same run always has the same spec digest. Anything else is left to validation."""
    if isinstance(value, bool):
        return value
    if type_name == "float" and isinstance(value, int):
        return float(value)
    if type_name == "int" and isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise RelayError(f"run spec field {name}: expected a whole number, got {value}")
    return value
