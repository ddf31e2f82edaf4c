"""Pretrained starts: a Hugging Face model directory copied once into the run's store, by digest.

    base/<sha256>/config.json, model*.safetensors[, model.safetensors.index.json], tokenizer files
    base/<sha256>/manifest.json   every file with size and sha256; written LAST with create()

`<sha256>` is the digest of the directory's content (the sorted file names with their sha256), so
the same model copied twice lands on the same objects, and the spec records it (`init_sha256`).
Workers read the base from the run's store only, verifying every file against the manifest.

The source directory (local path, file://, s3:// or gs:// URL) is checked before anything is
written: config.json of a supported architecture, every weight file present and whole (a
safetensors header whose tensors fit the file), a tokenizer whose vocabulary fits the model.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import replace
from pathlib import Path

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import base_key
from relaytrain_runtime.presets import from_hf_config
from relaytrain_runtime.store import NotFound, Store, open_store

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
MANIFEST = "manifest.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja")
OPTIONAL_FILES = ("generation_config.json",)


class PretrainedError(RelayError):
    """The pretrained directory is not a usable model."""


# ------------------------------------------------------------------------------------- checking


def _read(src: Store, name: str, what: str) -> bytes:
    try:
        return src.read(name)
    except NotFound:
        raise PretrainedError(f"{src.url}/{name} is missing ({what})") from None


def check_safetensors(data: bytes, where: str) -> None:
    """A whole safetensors file: its header parses and every tensor's bytes lie inside the file."""
    if len(data) < 8:
        raise PretrainedError(f"{where} is truncated ({len(data)} bytes: no safetensors header)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        raise PretrainedError(f"{where} is truncated or not a safetensors file (unreadable header)") from None
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != len(data):
        raise PretrainedError(f"{where} is truncated ({len(data)} bytes, its header describes {8 + n + end})")


def weight_files(src: Store) -> list[str]:
    """The safetensors files of the directory: the shards its index names, or the single file."""
    if src.exists(WEIGHTS_INDEX):
        try:
            weight_map = json.loads(src.read(WEIGHTS_INDEX))["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise PretrainedError(f"{src.url}/{WEIGHTS_INDEX} is corrupt (no weight_map)") from None
        return sorted(set(weight_map.values()))
    if not src.exists(WEIGHTS):
        raise PretrainedError(f"{src.url} has no weights: expected {WEIGHTS} or {WEIGHTS_INDEX} (safetensors)")
    return [WEIGHTS]


def tokenizer_vocab(tokenizer_json: bytes) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json.decode()).get_vocab_size(with_added_tokens=True)


def read_source(url: str) -> tuple[dict, dict[str, bytes]]:
    """(config.json as a dict, every file to copy by name) of a pretrained directory, all checked."""
    src = open_store(url)
    if not src.exists(CONFIG):
        raise PretrainedError(f"{src.url} is not a model directory (no {CONFIG})")
    try:
        config = json.loads(_read(src, CONFIG, "the model config"))
    except ValueError:
        raise PretrainedError(f"{src.url}/{CONFIG} is not valid JSON") from None
    cfg = from_hf_config(config, f"{src.url}/{CONFIG}")
    files = {CONFIG: json.dumps(config, indent=1, sort_keys=True).encode()}
    for name in weight_files(src):
        data = _read(src, name, "a weight file the index names")
        check_safetensors(data, f"{src.url}/{name}")
        files[name] = data
    if src.exists(WEIGHTS_INDEX):
        files[WEIGHTS_INDEX] = src.read(WEIGHTS_INDEX)
    if not src.exists("tokenizer.json"):
        raise PretrainedError(f"{src.url} has no tokenizer.json (a fast tokenizer saved with save_pretrained)")
    for name in TOKENIZER_FILES + OPTIONAL_FILES:
        if src.exists(name):
            files[name] = src.read(name)
    vocab = tokenizer_vocab(files["tokenizer.json"])
    if vocab > cfg.vocab_size:
        raise PretrainedError(f"{src.url}/tokenizer.json has {vocab} tokens, more than the model's vocab_size "
                              f"{cfg.vocab_size} ({CONFIG})")
    return config, files


def directory_digest(files: dict[str, bytes]) -> tuple[str, dict]:
    entries = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
               for name, data in sorted(files.items())}
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return digest, entries


# ------------------------------------------------------------------------------------- storing


def store_base(store: Store, sha: str, files: dict[str, bytes], entries: dict, source: str) -> None:
    """Copy a checked directory into `store` under base/<sha256>/, once: the manifest is created last."""
    manifest_key = base_key(sha, MANIFEST)
    if store.exists(manifest_key):
        return
    for name, data in files.items():
        store.write(base_key(sha, name), data)
    store.create(manifest_key, (json.dumps({"files": entries, "source": source}, indent=1) + "\n").encode())


def prepare_spec(store: Store, spec):
    """The spec of a pretrained start with its base stored: init_sha256 and the full model shape filled in
    from the directory (the same directory always gives the same spec). Everything is checked (the
    directory, the spec, the LoRA targets) before the first object is written."""
    if not spec.init_from:
        if spec.finetune == "lora":
            check_targets(spec)
        return spec
    if "://" not in spec.init_from:  # a local path: recorded as its file:// URL (one spelling per directory)
        spec = replace(spec, init_from=Path(spec.init_from).absolute().as_uri())
    config, files = read_source(spec.init_from)
    sha, entries = directory_digest(files)
    if spec.init_sha256 and spec.init_sha256 != sha:
        raise RelayError(f"init_from {spec.init_from} holds a different model (sha256 {sha}) than the run's "
                         f"init_sha256 {spec.init_sha256}")
    shape = {**from_hf_config(config).to_dict(), **{k: v for k, v in spec.model_shape.items() if k == "dropout"}}
    if "family" in spec.model_shape:  # a declared shape (e.g. for validating a blueprint) must be the directory's
        differ = sorted(k for k, v in shape.items() if k in spec.model_shape and spec.model_shape[k] != v)
        if differ:
            raise RelayError("model_shape: differs from " + f"{spec.init_from}/{CONFIG} in "
                             + ", ".join(f"{k} ({spec.model_shape[k]!r} vs {shape[k]!r})" for k in differ))
    spec = replace(spec, preset="", init_sha256=sha, model_shape=shape)
    if spec.finetune == "lora":
        check_targets(spec)
    store_base(store, sha, files, entries, spec.init_from)
    return spec


def check_targets(spec) -> None:
    """Refuse LoRA targets that match no module of the model (checked on a shape-only build)."""
    import torch

    from relaytrain_runtime.lora import missing_targets
    from relaytrain_runtime.model import hf_model

    with torch.device("meta"):
        hf = hf_model(spec.model)
    missing_targets(hf, spec)


def base_files(store: Store, sha: str, only: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """The verified files of base `sha` in the run's store (all, or those of `only` that it has)."""
    entries = base_manifest(store, sha)
    out = {}
    for name, entry in entries.items():
        if only is not None and name not in only:
            continue
        data = store.read(base_key(sha, name))
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise RelayError(f"{store.url}/{base_key(sha, name)} is corrupt (size or sha256 differs from its "
                             "manifest); run init again to restore it")
        out[name] = data
    return out


def base_manifest(store: Store, sha: str) -> dict:
    try:
        return json.loads(store.read(base_key(sha, MANIFEST)))["files"]
    except NotFound:
        raise RelayError(f"{store.url} lacks the run's pretrained base {base_key(sha, MANIFEST)}; "
                         "run `relaytrain init --init-from ...` for this store") from None


def load_base(store: Store, sha: str) -> tuple[dict, dict]:
    """(config.json dict, {name: tensor}) of base `sha`, every file verified. One weight file's bytes are
    held at a time (each is decoded, then dropped), so the peak is about the weights once."""
    from safetensors.torch import load

    names = sorted(n for n in base_manifest(store, sha) if n.endswith(".safetensors"))
    config = json.loads(base_files(store, sha, only=(CONFIG,))[CONFIG])
    tensors = {}
    for name in names:
        data = base_files(store, sha, only=(name,))[name]
        tensors.update(load(data))
        del data
    return config, tensors


def transformers_config_of(config: dict):
    """The `transformers` config object of a stored config.json, with SDPA attention."""
    from transformers import AutoConfig

    kwargs = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version")}
    hf_config = AutoConfig.for_model(config["model_type"], **kwargs)
    hf_config._attn_implementation = "sdpa"
    return hf_config


def load_into(hf, tensors: dict, where: str) -> None:
    """Put the base's tensors into `hf` (assigned, not copied: `hf` was built without init, so its empty
    storage is released), then float32; only weights tied to another may be absent."""
    import torch

    result = hf.load_state_dict(tensors, strict=False, assign=True)
    tied = set(getattr(hf, "_tied_weights_keys", None) or {}) if hf.config.tie_word_embeddings else set()
    missing = sorted(set(result.missing_keys) - tied)
    if missing:
        raise PretrainedError(f"{where}: the weights lack {len(missing)} tensor(s) of the model, e.g. {missing[0]}")
    if result.unexpected_keys:
        raise PretrainedError(f"{where}: the weights hold tensor(s) the model does not have, "
                              f"e.g. {sorted(result.unexpected_keys)[0]}")
    hf.tie_weights()
    hf.to(torch.float32)


def _token(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def base_tokenizer(store: Store, sha: str):
    """(tokenizers.Tokenizer, {EOS/PAD/MASK name: id}) of base `sha`: the run's tokenizer for a pretrained start."""
    from tokenizers import Tokenizer

    from relaytrain_runtime.data import EOS, MASK, PAD

    files = base_files(store, sha, only=("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"))
    tok = Tokenizer.from_str(files["tokenizer.json"].decode())
    named = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if name in files:
            named.update({k: _token(v) for k, v in json.loads(files[name]).items() if k.endswith("_token")})
    ids = {k: tok.token_to_id(v) for k, v in named.items() if v is not None}
    eos = ids.get("eos_token", ids.get("sep_token"))
    if eos is None:
        raise PretrainedError(f"{store.url}/base/{sha}: the tokenizer names no eos_token (or sep_token) "
                              "to end documents")
    return tok, {EOS: eos, PAD: ids.get("pad_token", eos), MASK: ids.get("mask_token")}
