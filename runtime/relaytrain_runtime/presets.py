"""Model shapes: pure-Python configs with analytic parameter counts (no torch import; the kit reads them).

A `ModelConfig` names a Hugging Face `transformers` architecture (`family`) and its shape. `hf_config()`
turns it into the keyword arguments of that architecture's config class, `from_hf_config()` reads a
pretrained directory's config.json back. The counts follow the canonical Hugging Face layouts
(GPT2LMHeadModel with tied embeddings, BertForMaskedLM without the pooler, Llama/Qwen2 decoders with
grouped-query attention, SwiGLU MLPs and RMSNorm). A test pins each count against the built model.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields, replace

from relaytrain_runtime import RelayError

# family -> (Hugging Face model_type, task): the architectures the runtime builds
FAMILIES: dict[str, tuple[str, str]] = {
    "gpt": ("gpt2", "causal"),
    "bert": ("bert", "masked"),
    "llama": ("llama", "causal"),
    "qwen2": ("qwen2", "causal"),
}
MODEL_TYPES = {model_type: family for family, (model_type, _) in FAMILIES.items()}
# LoRA's default target modules per family: the attention projections
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt": ("c_attn", "c_proj"),
    "bert": ("query", "key", "value"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
}


@dataclass(frozen=True)
class ModelConfig:
    family: str  # a key of FAMILIES
    vocab_size: int
    n_positions: int  # maximum sequence length
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float = 0.0
    type_vocab_size: int = 2  # bert only
    layer_norm_eps: float = 1e-5
    n_kv_heads: int = 0  # llama/qwen2: key/value heads of grouped-query attention (0 = n_heads)
    tie_embeddings: bool = True  # llama/qwen2: LM head shares the token embeddings (gpt/bert always tie)
    rope_theta: float = 10000.0  # llama/qwen2

    @property
    def task(self) -> str:
        """"causal" (next-token LM) or "masked" (masked LM)."""
        return FAMILIES[self.family][1]

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self, where: str = "model_shape") -> list[str]:
        """Shape errors, each naming its field (`model_shape.n_heads: ...`)."""
        if self.family not in FAMILIES:
            return [f"{where}.family: unknown {self.family!r} (choose one of: {', '.join(FAMILIES)})"]
        out = [f"{where}.{name}: must be >= 1, got {getattr(self, name)}" for name in
               ("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "d_ff") if getattr(self, name) < 1]
        if out:
            return out
        if self.d_model % self.n_heads:
            out.append(f"{where}.n_heads: must divide d_model {self.d_model}, got {self.n_heads}")
        if self.n_kv_heads < 0 or self.n_heads % self.kv_heads:
            out.append(f"{where}.n_kv_heads: must divide n_heads {self.n_heads} (0 = n_heads), got {self.n_kv_heads}")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        return out

    def param_count(self) -> int:
        d, f, v, L = self.d_model, self.d_ff, self.vocab_size, self.n_layers
        if self.family in ("llama", "qwen2"):
            kv = self.kv_heads * (d // self.n_heads)
            attn = 2 * d * d + 2 * d * kv + ((d + 2 * kv) if self.family == "qwen2" else 0)  # qwen2: q/k/v biases
            block = attn + 3 * d * f + 2 * d  # gate/up/down, two RMSNorms
            return v * d + L * block + d + (0 if self.tie_embeddings else v * d)
        attn = 3 * (d * d + d) + (d * d + d)
        mlp = (d * f + f) + (f * d + d)
        if self.family == "gpt":
            block = 2 * (2 * d) + attn + mlp  # ln_1, ln_2
            return v * d + self.n_positions * d + L * block + 2 * d  # wte, wpe, blocks, ln_f
        block = attn + mlp + 2 * (2 * d)  # attention.output.LayerNorm, output.LayerNorm
        emb = v * d + self.n_positions * d + self.type_vocab_size * d + 2 * d
        head = (d * d + d) + 2 * d + v  # transform.dense, transform.LayerNorm, decoder bias
        return emb + L * block + head


    def linear_shapes(self) -> dict[str, list[tuple[int, int]]]:
        """(in, out) of every linear layer by module name (one entry per layer instance), for LoRA counts."""
        d, f, L = self.d_model, self.d_ff, self.n_layers
        if self.family in ("llama", "qwen2"):
            kv = self.kv_heads * (d // self.n_heads)
            per = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
                   "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}
            shapes = {name: [shape] * L for name, shape in per.items()}
        elif self.family == "gpt":
            shapes = {"c_attn": [(d, 3 * d)] * L, "c_proj": [(d, d), (f, d)] * L, "c_fc": [(d, f)] * L}
        else:
            shapes = {"query": [(d, d)] * L, "key": [(d, d)] * L, "value": [(d, d)] * L,
                      "dense": [(d, d), (d, f), (f, d)] * L + [(d, d)]}
        if self.task == "causal":
            shapes["lm_head"] = [(d, self.vocab_size)]
        return shapes

    def lora_param_count(self, rank: int, targets: list[str] | tuple[str, ...] | None = None) -> int:
        """Trainable parameters of LoRA adapters of `rank` on `targets` (default: the family's)."""
        shapes = self.linear_shapes()
        wanted = targets or LORA_TARGETS[self.family]
        return sum(rank * (i + o) for name in wanted for i, o in shapes.get(name, []))


def _llama(vocab: int, positions: int, d: int, layers: int, heads: int, kv: int, ff: int, **kw) -> ModelConfig:
    return ModelConfig(kw.pop("family", "llama"), vocab_size=vocab, n_positions=positions, d_model=d, n_layers=layers,
                       n_heads=heads, n_kv_heads=kv, d_ff=ff, **kw)


PRESETS: dict[str, ModelConfig] = {
    "tiny-gpt": ModelConfig("gpt", vocab_size=4096, n_positions=128, d_model=128, n_layers=4, n_heads=4, d_ff=512),
    "tiny-bert": ModelConfig("bert", vocab_size=4096, n_positions=128, d_model=128, n_layers=4, n_heads=4, d_ff=512,
                             layer_norm_eps=1e-12),
    "gpt2-small": ModelConfig("gpt", vocab_size=50257, n_positions=1024, d_model=768, n_layers=12, n_heads=12,
                              d_ff=3072),
    "bert-base": ModelConfig("bert", vocab_size=30522, n_positions=512, d_model=768, n_layers=12, n_heads=12,
                             d_ff=3072, layer_norm_eps=1e-12),
    "bert-large": ModelConfig("bert", vocab_size=30522, n_positions=512, d_model=1024, n_layers=24, n_heads=16,
                              d_ff=4096, layer_norm_eps=1e-12),
    # Llama-family decoders: rotary positions, RMSNorm, SwiGLU, grouped-query attention
    "tiny-llama": _llama(4096, 128, 128, 4, 4, 2, 384),
    "smollm-135m": _llama(49152, 2048, 576, 30, 9, 3, 1536),  # SmolLM-135M's shape
    "qwen2.5-0.5b": _llama(151936, 32768, 896, 24, 14, 2, 4864, family="qwen2", layer_norm_eps=1e-6,
                           rope_theta=1000000.0),  # Qwen2.5-0.5B's shape
    "tinyllama-1.1b": _llama(32000, 2048, 2048, 22, 32, 4, 5632, tie_embeddings=False),  # TinyLlama-1.1B's shape
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise RelayError(f"unknown model preset {name!r} (choose one of: {', '.join(PRESETS)})") from None


CONFIG_FIELDS = tuple(f.name for f in fields(ModelConfig))


def resolve_config(preset: str, model: dict | None) -> tuple[ModelConfig | None, list[str]]:
    """The shape of a run: the preset with `model`'s fields (the spec's model_shape) overriding it, or `model`
    alone when it names its `family` (a full config). Returns (config or None, problems naming the field)."""
    model = dict(model or {})
    unknown = sorted(set(model) - set(CONFIG_FIELDS))
    if unknown:
        return None, [f"model_shape.{k}: unknown field (known: {', '.join(CONFIG_FIELDS)})" for k in unknown]
    if "family" in model:
        missing = [f.name for f in fields(ModelConfig) if f.default is MISSING and f.name not in model]
        if missing:
            return None, [f"model_shape.{k}: required in a full config (one with family)" for k in missing]
        try:
            cfg = ModelConfig(**model)
        except TypeError as exc:
            return None, [f"model_shape: {exc}"]
    elif preset not in PRESETS:
        return None, [f"preset: unknown {preset!r} (choose one of: {', '.join(PRESETS)})"]
    else:
        cfg = replace(PRESETS[preset], **model)
    bad = [f"model_shape.{name}: expected a number, got {getattr(cfg, name)!r}" for name in CONFIG_FIELDS
           if name != "family" and not isinstance(getattr(cfg, name), (int, float))]
    return (None, bad) if bad else (cfg, cfg.problems())


# ------------------------------------------------------------------------ Hugging Face configs


def hf_config(cfg: ModelConfig, eos_id: int | None = None, pad_id: int | None = None) -> dict:
    """The `transformers` config (model_type plus its keyword arguments) of `cfg`, with the tokenizer's
    end-of-text and padding ids when known."""
    model_type = FAMILIES[cfg.family][0]
    if cfg.family == "gpt":
        return {"model_type": model_type, "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
                "n_positions": cfg.n_positions, "n_embd": cfg.d_model, "n_layer": cfg.n_layers,
                "n_head": cfg.n_heads, "n_inner": cfg.d_ff, "activation_function": "gelu_new",
                "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
                "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02,
                "bos_token_id": eos_id, "eos_token_id": eos_id, "tie_word_embeddings": True}
    if cfg.family == "bert":
        return {"model_type": model_type, "architectures": ["BertForMaskedLM"], "vocab_size": cfg.vocab_size,
                "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
                "intermediate_size": cfg.d_ff, "hidden_act": "gelu", "hidden_dropout_prob": cfg.dropout,
                "attention_probs_dropout_prob": cfg.dropout, "max_position_embeddings": cfg.n_positions,
                "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps,
                "initializer_range": 0.02, "pad_token_id": pad_id, "tie_word_embeddings": True}
    arch = "Qwen2ForCausalLM" if cfg.family == "qwen2" else "LlamaForCausalLM"
    return {"model_type": model_type, "architectures": [arch], "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff, "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.kv_heads,
            "max_position_embeddings": cfg.n_positions, "rms_norm_eps": cfg.layer_norm_eps,
            "rope_theta": cfg.rope_theta, "attention_dropout": cfg.dropout, "hidden_act": "silu",
            "initializer_range": 0.02, "tie_word_embeddings": cfg.tie_embeddings,
            "bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}


def _rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise RelayError(f"rope scaling {rope.get('rope_type')!r} is not supported (plain rotary positions only)")
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


def from_hf_config(config: dict, where: str = "config.json") -> ModelConfig:
    """The ModelConfig of a pretrained directory's config.json; unsupported architectures are refused."""
    model_type = config.get("model_type")
    family = MODEL_TYPES.get(model_type)
    if family is None:
        raise RelayError(f"{where}: unsupported architecture model_type={model_type!r} "
                         f"(supported: {', '.join(MODEL_TYPES)})")
    try:
        if family == "gpt":
            return ModelConfig(family, vocab_size=config["vocab_size"], n_positions=config["n_positions"],
                               d_model=config["n_embd"], n_layers=config["n_layer"], n_heads=config["n_head"],
                               d_ff=config.get("n_inner") or 4 * config["n_embd"],
                               layer_norm_eps=config.get("layer_norm_epsilon", 1e-5))
        if family == "bert":
            return ModelConfig(family, vocab_size=config["vocab_size"],
                               n_positions=config["max_position_embeddings"], d_model=config["hidden_size"],
                               n_layers=config["num_hidden_layers"], n_heads=config["num_attention_heads"],
                               d_ff=config["intermediate_size"], type_vocab_size=config.get("type_vocab_size", 2),
                               layer_norm_eps=config.get("layer_norm_eps", 1e-12))
        return ModelConfig(family, vocab_size=config["vocab_size"], n_positions=config["max_position_embeddings"],
                           d_model=config["hidden_size"], n_layers=config["num_hidden_layers"],
                           n_heads=config["num_attention_heads"],
                           n_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                           d_ff=config["intermediate_size"], layer_norm_eps=config.get("rms_norm_eps", 1e-6),
                           tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                           rope_theta=_rope_theta(config))
    except KeyError as exc:
        raise RelayError(f"{where}: {model_type} config lacks {exc.args[0]!r}") from None
