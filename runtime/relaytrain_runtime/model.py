"""Models: Hugging Face `transformers` classes built from a `ModelConfig`, attention through SDPA.

A preset (or any custom shape) becomes its family's config class and `AutoModelForCausalLM` /
`AutoModelForMaskedLM` builds it: GPT2LMHeadModel, BertForMaskedLM, LlamaForCausalLM,
Qwen2ForCausalLM. `LanguageModel` wraps it behind the runtime's call, `model(input_ids, labels)
-> (logits, loss)`, with the library's loss conventions (causal models shift the labels inside,
masked models ignore labels equal to -100).

Weights are initialised from the seed: `torch.manual_seed(seed)` right before construction makes
the library's own initialisation a pure function of the seed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from relaytrain_runtime.presets import ModelConfig, hf_config

IGNORE_INDEX = -100
LOSS_TYPES = {"causal": "ForCausalLM", "masked": "ForMaskedLM"}  # transformers' loss functions


class LanguageModel(nn.Module):
    """A `transformers` model (or a PEFT model around one) behind the runtime's call convention."""

    def __init__(self, hf: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.hf = hf
        self.model_config = cfg
        # transformers picks a model's loss by its class name; names like GPT2LMHeadModel match none, and each
        # model then printed a notice and fell back to the causal loss (wrong for a masked model): name it
        base = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
        base.loss_type = LOSS_TYPES[cfg.task]

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        out = self.hf(input_ids=input_ids, labels=labels)
        return out.logits, out.loss


def transformers_config(cfg: ModelConfig, eos_id: int | None = None, pad_id: int | None = None):
    """The `transformers` config object of `cfg`, with SDPA attention."""
    from transformers import AutoConfig

    kwargs = hf_config(cfg, eos_id, pad_id)
    model_type = kwargs.pop("model_type")
    config = AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = "sdpa"
    return config


def auto_class(cfg: ModelConfig):
    import transformers

    return transformers.AutoModelForCausalLM if cfg.task == "causal" else transformers.AutoModelForMaskedLM


def hf_model(cfg: ModelConfig, config=None) -> nn.Module:
    """The bare `transformers` model of `cfg` (or of a given transformers `config`), initialised by the library."""
    return auto_class(cfg).from_config(config or transformers_config(cfg), attn_implementation="sdpa")


def build_model(cfg: ModelConfig, seed: int | None = None) -> LanguageModel:
    """The model of a config, initialised from `seed` (torch's global RNG if None)."""
    if seed is not None:
        torch.manual_seed(seed)
    return LanguageModel(hf_model(cfg), cfg)


def empty_model(cfg: ModelConfig, config=None) -> LanguageModel:
    """The model without the random init: for restoring weights that overwrite every parameter.
    Buffers (rotary frequencies, position ids) are still computed by the library."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        hf = hf_model(cfg, config)
    hf.tie_weights()  # the skipped init also skipped the tying
    return LanguageModel(hf, cfg)


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: the trainable parameters by name, each tied tensor once, in a
    canonical (sorted) order. For a full model that is every parameter (Hugging Face names); for LoRA
    only the adapters (the frozen base is stored once, under base/)."""
    inner = model.hf if isinstance(model, LanguageModel) else model
    return dict(sorted((name, p) for name, p in inner.named_parameters() if p.requires_grad))


def all_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by name (trainable or frozen), each tied tensor once."""
    inner = model.hf if isinstance(model, LanguageModel) else model
    return dict(sorted(inner.named_parameters()))
