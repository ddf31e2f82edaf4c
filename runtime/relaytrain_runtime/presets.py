"""Model presets: pure-Python configs with analytic parameter counts (no torch import).

The counts follow the canonical Hugging Face layouts (GPT2LMHeadModel with tied embeddings,
BertForMaskedLM without the pooler, decoder tied to the word embeddings).
A test pins each count against the instantiated torch module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from relaytrain_runtime import RelayError


@dataclass(frozen=True)
class ModelConfig:
    family: str  # "gpt" (causal decoder) or "bert" (masked-LM encoder)
    vocab_size: int
    n_positions: int  # maximum sequence length
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float = 0.0
    type_vocab_size: int = 2  # bert only
    layer_norm_eps: float = 1e-5

    def to_dict(self) -> dict:
        return asdict(self)

    def param_count(self) -> int:
        d, f, v, L = self.d_model, self.d_ff, self.vocab_size, self.n_layers
        attn = 3 * (d * d + d) + (d * d + d)
        mlp = (d * f + f) + (f * d + d)
        if self.family == "gpt":
            block = 2 * (2 * d) + attn + mlp  # ln_1, ln_2
            return v * d + self.n_positions * d + L * block + 2 * d  # wte, wpe, blocks, ln_f
        block = attn + mlp + 2 * (2 * d)  # attention.output.LayerNorm, output.LayerNorm
        emb = v * d + self.n_positions * d + self.type_vocab_size * d + 2 * d
        head = (d * d + d) + 2 * d + v  # transform.dense, transform.LayerNorm, decoder bias
        return emb + L * block + head


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
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise RelayError(f"unknown model preset {name!r} (choose one of: {', '.join(PRESETS)})") from None
