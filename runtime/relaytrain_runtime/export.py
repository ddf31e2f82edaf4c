"""Export a checkpoint and the run's tokenizer as a Hugging Face model directory.

The runtime's models are `transformers` models, so export restores the checkpoint and lets the
library write it (`save_pretrained`: config.json, model.safetensors, tied weights left to the
library). A LoRA run is merged into its base by default; with `adapter=True` the PEFT adapter
directory is written instead (adapter_config.json + adapter_model.safetensors, loadable onto the
base with `peft`), with the base's config beside it.
The directory is written beside its destination and renamed into place: never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from relaytrain_runtime import RelayError
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import EOS, MASK, PAD, dataset_store, read_manifest
from relaytrain_runtime.store import open_store


def tokenizer_files(task: str, max_length: int) -> dict[str, dict]:
    if task == "causal":
        tokens = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": PAD}
    else:
        tokens = {"mask_token": MASK, "pad_token": PAD, "unk_token": EOS}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, **tokens}
    return {"tokenizer_config.json": config, "special_tokens_map.json": tokens}


def _check_out(out: Path) -> None:
    earlier = (out / "config.json").is_file() or (out / "adapter_config.json").is_file()
    if out.exists() and not earlier and (not out.is_dir() or any(out.iterdir())):
        raise RelayError(f"--out {out} exists and is not an earlier export; choose a new or empty directory")


def best_gen(baton: Baton) -> int:
    """The gen with the lowest validation loss so far (kept out of pruning), from the newest commit's meta."""
    commit, state = baton.resume()
    best = (state or {}).get("meta", {}).get("best_gen") or 0
    if not best:
        raise RelayError(f"{baton.store.url} has no evaluated checkpoint yet: evaluations happen when the run is done "
                         "and every training.eval_every steps")
    return best


def _commit_of(baton: Baton, gen: int | None) -> tuple[dict, dict]:
    if gen is None:
        commit, state = baton.resume()
        if commit is None:
            raise RelayError(f"{baton.store.url} has no checkpoint yet; train first "
                             f"(`relaytrain leg --store {baton.store.url}`)")
        return commit, state
    if gen not in baton.gens():
        kept = ", ".join(map(str, baton.gens())) or "none"
        raise RelayError(f"--gen {gen}: no such checkpoint in {baton.store.url} (kept gens: {kept})")
    commit = baton.manifest(gen)
    return commit, baton.load(commit)


def _write_tokenizer(tmp: Path, store, spec) -> None:
    from relaytrain_runtime.pretrained import TOKENIZER_FILES, base_files

    if spec.init_from:
        for name, data in base_files(store, spec.init_sha256, only=TOKENIZER_FILES).items():
            (tmp / name).write_bytes(data)
        return
    data_store = dataset_store(store, spec)
    manifest = read_manifest(data_store)
    for name, content in tokenizer_files(spec.model.task, spec.model.n_positions).items():
        (tmp / name).write_text(json.dumps(content, indent=1) + "\n")
    (tmp / "tokenizer.json").write_bytes(data_store.read(manifest["tokenizer"]))


def _write_model(tmp: Path, model, spec, commit: dict, adapter: bool) -> None:
    from relaytrain_runtime.lora import is_lora

    hf = model.hf
    if adapter:
        if not is_lora(spec):
            raise RelayError("--adapter: the run is a full fine-tune (finetune=full); it has no adapter to export")
        hf.save_pretrained(str(tmp))
        hf.get_base_model().config.save_pretrained(str(tmp))
    else:
        if is_lora(spec):
            hf = hf.merge_and_unload()
        hf.save_pretrained(str(tmp))
    config = json.loads((tmp / "config.json").read_text())
    config["relaytrain"] = {"store": commit.get("store"), "gen": commit["gen"], "step": commit["step"],
                            "preset": spec.preset, "init_from": spec.init_from, "finetune": spec.finetune,
                            "weights_sha256": commit["weights_sha256"]}
    (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def export_hf(store_url: str, out_dir: str | os.PathLike, gen: int | None = None, adapter: bool = False,
              best: bool = False) -> Path:
    """Write checkpoint `gen` (default: the latest; `best`: the lowest validation loss) as a Hugging Face
    directory at `out_dir`; returns its path."""
    from relaytrain_runtime.train import build

    out = Path(out_dir).absolute()
    _check_out(out)
    store = open_store(store_url)
    baton = Baton(store)
    spec = baton.spec()
    if best:
        if gen is not None:
            raise RelayError("export: give --gen N or --best, not both")
        gen = best_gen(baton)
    commit, state = _commit_of(baton, gen)
    model, _ = build(spec, state, store=store)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_model(tmp, model, spec, {**commit, "store": store.url}, adapter)
        _write_tokenizer(tmp, store, spec)
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
