"""The run spec: everything that defines a training run, written into the store once.

Pure Python (no torch). A blueprint's `training:` section is exactly this spec: its schema is derived
from these fields (relaytrain.blueprint.schema) and validated by `RunSpec.problems`, so a field added
here, with its check in `problems`, is settable and checked in blueprints without another edit.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from relaytrain_runtime import RelayError
from relaytrain_runtime.presets import resolve_config

SPEC_VERSION = 1
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit seed
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("", "fp32", "bf16-mixed", "fp16-mixed")  # "" = the device's default (docs/GPU.md)
PARALLELISMS = ("ddp", "fsdp")
SAMPLINGS = ("epochs", "replacement")
FINETUNES = ("full", "lora")
BASE_DTYPES = ("float32", "bfloat16")  # lora: the frozen base's dtype
Problem = tuple[str, str]  # (field, message)


def settings_problems(cls, data: dict) -> list[Problem]:
    """The problems of a settings mapping for `cls` (RunSpec, ShardsConfig), unknown fields included; [] when
    `cls.from_dict` accepts it."""
    try:
        cls.from_dict(data)
    except SpecError as exc:
        return exc.problems
    return []


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
    precision: str = ""  # fp32 | bf16-mixed | fp16-mixed; "" = the device's default (docs/GPU.md)
    deterministic: bool = False  # deterministic CUDA kernels (CPU training is deterministic either way)
    compile: bool = False  # torch.compile the model (GPU nodes; its cache lives on the node's disk)
    parallelism: str = "ddp"  # ddp | fsdp (FSDP2 fully_shard, sharded checkpoints)
    eval_every: int = 0  # steps: evaluate at the first commit at or after each multiple (0 = only at the end)
    sampling: str = "epochs"  # epochs (each window once per epoch; default: exact data accounting) | replacement

    model_shape: dict = field(default_factory=dict)  # overrides of the preset's fields, or a full config (family...)
    init_from: str = ""  # a pretrained HF model directory: local path, file://, s3:// or gs:// URL ("" = random init)
    init_sha256: str = ""  # digest of the pretrained directory, filled in at init (its copy: base/<sha256>/)
    finetune: str = "full"  # full | lora
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = ""  # comma-separated module names ("" = the family's default)
    base_dtype: str = "float32"  # lora: dtype of the frozen base (float32 | bfloat16)

    CHOICES: ClassVar[dict[str, tuple]] = {
        "schedule": SCHEDULES,
        "precision": PRECISIONS,
        "parallelism": PARALLELISMS,
        "sampling": SAMPLINGS,
        "finetune": FINETUNES,
        "base_dtype": BASE_DTYPES,
    }  # fields that take one of a few values

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SpecError(problems)

    def problems(self) -> list[Problem]:
        """Every value of this spec that cannot train, as (field, message) pairs; [] when it can.

        The one check of a run spec: `init`, the handlers and blueprint validation all come here. Types
        come from the field annotations (a bool is not an int, a float must be finite); each range rule
        runs only on well-typed values.
        """
        out = field_type_problems(self)
        wrong = {name for name, _ in out}

        def need(name: str, rule: str, ok: Callable[[], bool], *uses: str) -> None:
            """`name` must satisfy `ok` (evaluated only when `name` and the fields it `uses` are well typed)."""
            if wrong.isdisjoint((name, *uses)) and not ok():
                out.append((name, f"must {rule}, got {getattr(self, name)!r}"))

        if wrong.isdisjoint(("preset", "model_shape")) and not (self.init_from and "family" not in self.model_shape):
            # (a pretrained start's shape is read from its directory at init; then model_shape is complete)
            cfg, shape_problems = resolve_config(self.preset, self.model_shape)
            out += [_pair(problem) for problem in shape_problems]
            if cfg is not None and not shape_problems:
                positions = cfg.n_positions
                need("seq_len", f"be 1..{positions} for {self.preset} (0 = {positions})",
                     lambda: 0 <= self.seq_len <= positions)
        need("steps", "be >= 1", lambda: self.steps >= 1)
        need("seed", f"be 0..{MAX_SEED} (2**63-1)", lambda: 0 <= self.seed <= MAX_SEED)
        need("batch_size", "be >= 1", lambda: self.batch_size >= 1)
        need("micro_batch_size", f"divide batch_size {self.batch_size}",
             lambda: self.micro_batch_size == 0 or (self.micro_batch_size > 0 and self.batch_size
                                                      % self.micro_batch_size == 0), "batch_size")
        need("schedule", "be " + choices(SCHEDULES), lambda: self.schedule in SCHEDULES)
        need("lr", "be > 0", lambda: self.lr > 0)
        need("min_lr", "be >= 0", lambda: self.min_lr >= 0)
        need("warmup_steps", "be >= 0", lambda: self.warmup_steps >= 0)
        need("weight_decay", "be >= 0", lambda: self.weight_decay >= 0)
        need("beta1", "be in [0, 1)", lambda: 0 <= self.beta1 < 1)
        need("beta2", "be in [0, 1)", lambda: 0 <= self.beta2 < 1)
        need("eps", "be > 0", lambda: self.eps > 0)
        need("grad_clip", "be >= 0 (0 = no clipping)", lambda: self.grad_clip >= 0)
        need("mlm_probability", "be in (0, 1)", lambda: 0 < self.mlm_probability < 1)
        need("keep_last", "be >= 1", lambda: self.keep_last >= 1)
        need("eval_batches", "be >= 1", lambda: self.eval_batches >= 1)
        need("precision", "be " + choices(PRECISIONS[1:]) + " (or empty: the device's default)",
             lambda: self.precision in PRECISIONS)
        need("parallelism", "be " + choices(PARALLELISMS), lambda: self.parallelism in PARALLELISMS)
        need("sampling", "be " + choices(SAMPLINGS), lambda: self.sampling in SAMPLINGS)
        need("eval_every", "be >= 0 (0 = only at the end)", lambda: self.eval_every >= 0)
        need("finetune", "be " + choices(FINETUNES), lambda: self.finetune in FINETUNES)
        need("lora_rank", "be >= 1", lambda: self.lora_rank >= 1)
        need("lora_alpha", "be > 0", lambda: self.lora_alpha > 0)
        need("lora_dropout", "be in [0, 1)", lambda: 0 <= self.lora_dropout < 1)
        need("base_dtype", "be " + choices(BASE_DTYPES), lambda: self.base_dtype in BASE_DTYPES)
        need("base_dtype", "be float32 unless finetune is lora (a full fine-tune trains in float32)",
             lambda: self.base_dtype not in BASE_DTYPES[1:] or self.finetune == "lora", "finetune")
        return out

    check = classmethod(settings_problems)  # the (field, message) pairs of a mapping

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
        """The spec as written to the store. Fields added since version 1 (LATE_FIELDS) are written only when
        they differ from their default, so a run written before they existed keeps its digest."""
        data = asdict(self)
        for name, default in LATE_FIELDS.items():
            if data[name] == default:
                del data[name]
        return {"spec_version": SPEC_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        data = dict(data)
        version = data.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise RelayError(f"run spec version {version} is not supported by this runtime (expected {SPEC_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = [(k, f"unknown field (known: {', '.join(sorted(known))})")
                   for k in sorted(set(data) - known, key=str)]
        if unknown:
            raise SpecError(unknown)
        hints = field_types(cls)
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str | bytes) -> RunSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RelayError(f"run spec is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RelayError("run spec must be a JSON object")
        return cls.from_dict(data)


LATE_FIELDS = {"precision": "", "deterministic": False, "compile": False, "parallelism": "ddp", "eval_every": 0,
               "model_shape": {}, "init_from": "", "init_sha256": "", "finetune": "full", "lora_rank": 8,
               "lora_alpha": 16.0, "lora_dropout": 0.0, "lora_targets": "", "base_dtype": "float32"}


def _coerce(name: str, value, hint):
    """JSON producers differ on numbers (Workflows, YAML, Pulumi send 1 or 1.0 alike): normalise them so the
    same run always has the same spec digest. Anything else is left to validation."""
    if isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int):
        return float(value)
    if hint is int and isinstance(value, float) and math.isfinite(value):
        if value.is_integer():
            return int(value)
        raise SpecError([(name, f"expected a whole number, got {value}")])
    return value


class SpecError(RelayError):
    """Values a settings record refuses; `problems` holds them as (field, message) pairs."""

    def __init__(self, problems: list[Problem], what: str = "run spec"):
        self.problems = list(problems)
        super().__init__(f"invalid {what}: " + "; ".join(f"{name}: {msg}" for name, msg in self.problems))


def _pair(problem: str) -> Problem:
    """("field", "message") of a `field: message` problem line (the model-shape checks of presets.py)."""
    name, _, message = problem.partition(": ")
    return (name, message) if message else ("model_shape", problem)


def choices(options) -> str:
    """`a, b or c`: the accepted values of a field, for messages."""
    options = [str(o) for o in options]
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def field_types(cls) -> dict[str, object]:
    """The resolved annotation of every field of a settings dataclass (RunSpec, ShardsConfig)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


_TYPE_WORDS = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}


def _type_ok(value, hint) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint in (str,):
        return isinstance(value, str)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin in (tuple, list):
        item = args[0] if args else object
        return isinstance(value, (tuple, list)) and all(_type_ok(v, item) for v in value)
    if hint is type(None):
        return value is None
    return not isinstance(hint, type) or isinstance(value, hint)  # an annotation we cannot check here


def _type_word(hint) -> str:
    if hint in _TYPE_WORDS:
        return _TYPE_WORDS[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_word(a) for a in args)
    if origin in (tuple, list):
        return f"a list of {_type_word(args[0]) if args else 'values'}"
    return getattr(hint, "__name__", str(hint))


def field_type_problems(record) -> list[Problem]:
    """(field, message) for every field of a settings dataclass whose value is not of its declared type."""
    out = []
    for name, hint in field_types(type(record)).items():
        value = getattr(record, name)
        if not _type_ok(value, hint):
            out.append((name, f"expected {_type_word(hint)}, got {_describe(value)}"))
    return out


def _describe(value) -> str:
    text = repr(value)
    return (text if len(text) <= 40 else text[:37] + "...") + f" ({type(value).__name__})"
