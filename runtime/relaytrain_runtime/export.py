"""Export the latest weights and the tokenizer as a Hugging Face `transformers` model directory.

GPT presets become `GPT2LMHeadModel`, BERT presets `BertForMaskedLM`. The runtime's parameter names
are already the Hugging Face names; GPT-2's `Conv1D` layers store their weight as (in, out), so those
are transposed. Tied weights (lm_head, the MLM decoder) are left for `transformers` to tie.
The directory is written beside its destination and renamed into place: never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import EOS, MASK, PAD, dataset_store, read_manifest
from relaytrain_runtime.presets import ModelConfig
from relaytrain_runtime.store import open_store

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hf_config(cfg: ModelConfig, special: dict[str, int]) -> dict:
    if cfg.family == "gpt":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
                "n_positions": cfg.n_positions, "n_embd": cfg.d_model, "n_layer": cfg.n_layers,
                "n_head": cfg.n_heads, "n_inner": cfg.d_ff, "activation_function": "gelu_new",
                "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
                "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02,
                "bos_token_id": special[EOS], "eos_token_id": special[EOS], "tie_word_embeddings": True}
    return {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
            "intermediate_size": cfg.d_ff, "hidden_act": "gelu", "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.dropout, "max_position_embeddings": cfg.n_positions,
            "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps,
            "initializer_range": 0.02, "pad_token_id": special[PAD], "tie_word_embeddings": True}


def hf_tensors(cfg: ModelConfig, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in weights.items():
        if cfg.family == "gpt" and name.endswith(CONV1D_SUFFIXES):
            t = t.t()
        out[name] = t.contiguous()
    return out


def tokenizer_files(cfg: ModelConfig, special: dict[str, int]) -> dict[str, dict]:
    if cfg.family == "gpt":
        tokens = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": PAD}
    else:
        tokens = {"mask_token": MASK, "pad_token": PAD, "unk_token": EOS}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.n_positions, **tokens}
    return {"tokenizer_config.json": config, "special_tokens_map.json": tokens}


def export_hf(store_url: str, out_dir: str | os.PathLike) -> Path:
    """Write the run's latest checkpoint as a Hugging Face model directory at `out_dir`; returns its path."""
    out = Path(out_dir).absolute()
    if out.exists() and not (out / "config.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise RelayError(f"--out {out} exists and is not an earlier export; choose a new or empty directory")
    store = open_store(store_url)
    baton = Baton(store)
    spec = baton.spec()
    commit, state = baton.resume()
    if commit is None:
        raise RelayError(f"{store.url} has no checkpoint yet; train first (`relaytrain leg --store {store.url}`)")
    manifest = read_manifest(dataset_store(store, spec))
    cfg = spec.model
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(hf_tensors(cfg, state["weights"]), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        files = {"config.json": {**hf_config(cfg, manifest["special_tokens"]), "relaytrain": {
            "store": store.url, "gen": commit["gen"], "step": commit["step"], "preset": spec.preset,
            "weights_sha256": commit["weights_sha256"]}}}
        files.update(tokenizer_files(cfg, manifest["special_tokens"]))
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=1) + "\n")
        (tmp / "tokenizer.json").write_bytes(dataset_store(store, spec).read(manifest["tokenizer"]))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
