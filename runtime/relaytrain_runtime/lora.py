"""LoRA fine-tuning through `peft`: low-rank adapters on a frozen base.

Only the adapters are trainable, so only they (and their AdamW moments) go into each checkpoint; a
pretrained base is stored once under base/<sha256>/, a random-init base is rebuilt from the seed.
Default target modules per family are the attention projections (presets.LORA_TARGETS).
"""

from __future__ import annotations

import torch

from relaytrain_runtime import RelayError
from relaytrain_runtime.presets import LORA_TARGETS


def is_lora(spec) -> bool:
    return spec.finetune == "lora"


def targets(spec) -> list[str]:
    given = [t.strip() for t in spec.lora_targets.split(",") if t.strip()]
    return given or list(LORA_TARGETS[spec.model.family])


def _linear_names(hf: torch.nn.Module) -> list[str]:
    from transformers.pytorch_utils import Conv1D

    linear = (torch.nn.Linear, Conv1D)
    return sorted({name.rsplit(".", 1)[-1] for name, m in hf.named_modules() if isinstance(m, linear)})


def missing_targets(hf: torch.nn.Module, spec) -> None:
    """Refuse target modules the model does not have, naming the ones it has."""
    present = _linear_names(hf)
    missing = [t for t in targets(spec) if t not in present]
    if missing:
        raise RelayError(f"lora_targets: {', '.join(missing)} match no module of the {spec.model.family} model "
                         f"(its linear layers: {', '.join(present)})")


def apply_lora(hf: torch.nn.Module, spec) -> torch.nn.Module:
    """`hf` with LoRA adapters of the spec (the adapters initialised from the seed); the base is frozen."""
    from peft import LoraConfig, TaskType, get_peft_model

    missing_targets(hf, spec)
    wanted = targets(spec)
    config = LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=wanted, fan_in_fan_out=spec.model.family == "gpt",
                        task_type=TaskType.CAUSAL_LM if spec.model.task == "causal" else None)
    if spec.base_dtype == "bfloat16":
        hf = hf.to(torch.bfloat16)
    torch.manual_seed(spec.seed)
    return get_peft_model(hf, config)
