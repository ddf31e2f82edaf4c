"""Data-parallel wrapping (DDP or FSDP2) and sharded checkpoints (torch.distributed.checkpoint) in the baton.

    model = wrap_model(model, spec.parallelism, device, world)     # after build(), before the optimizer is made
    optimizer = make_optimizer(model, spec)                        # FSDP: over the sharded (DTensor) parameters
    load_state(model, optimizer, spec, baton, state, staging)      # any checkpoint into any wrapping
    commit = save_sharded(baton, parent_gen, model, optimizer, meta, leg_id, staging)   # FSDP, every rank

`parallelism: fsdp` shards every block of the model (each module of an nn.ModuleList: GPT/BERT blocks,
Llama decoder layers) and then the root with `torch.distributed.fsdp.fully_shard`. Its checkpoint is
torch.distributed.checkpoint's own format: every rank writes its shard files into a local staging
folder (`FileSystemWriter`), uploads them to the store under the commit's `ckpt/<gen>-<leg>/dcp/`,
and rank 0 writes `state.json` and then the manifest, create-only and last, with every file's size
and sha256 (the same atomic, fenced commit as a leg's: a killed save leaves no manifest, a lost race
deletes its objects). Loading downloads and verifies the files and lets DCP reshard them onto the
current world size: 1 (a plain model, no process group: a leg or one GPU), 2, 4, ... A plain
(safetensors) checkpoint loads into an FSDP model too, so a run moves between legs, shards and
nodes in both directions.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from relaytrain_runtime.baton import SHARDED_FORMAT, Baton
from relaytrain_runtime.contract.keys import ckpt_prefix
from relaytrain_runtime.train import restore

DCP_DIR = "dcp/"  # under the commit's ckpt/<gen>-<leg>/ prefix
METADATA_FILE = ".metadata"  # DCP's global plan, written by the coordinator (rank 0)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def wrap_model(model: torch.nn.Module, parallelism: str, device: torch.device, world: int) -> torch.nn.Module:
    """The model as the node trains it: FSDP2 (`fsdp`, any world with a process group), DDP (`ddp`, world > 1),
    or itself. The model must already be on `device`; make the optimizer from the returned model."""
    if parallelism == "fsdp" and dist.is_initialized():
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        for blocks in [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]:
            for block in blocks:
                fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    if world > 1:
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose parameters the optimizer holds (DDP's .module; FSDP2 and plain models are themselves)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ------------------------------------------------------------------------------------------- save


def save_sharded(baton: Baton, parent_gen: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 meta: dict, leg_id: str, staging: pathlib.Path) -> dict | None:
    """Commit the model and optimizer as a DCP checkpoint. Collective: every rank calls it with the same
    `leg_id` and `parent_gen`; rank 0 writes the manifest. Returns the commit on every rank (None: lost race)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    t0 = time.perf_counter()
    gen = _next_gen(baton) if rank == 0 else 0
    gen = _broadcast(gen)
    prefix = ckpt_prefix(gen, leg_id) + DCP_DIR
    local = staging / f"dcp-{gen:08d}-{leg_id}"
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, storage_writer=dcp.FileSystemWriter(str(local)))
    objects = _upload_own_files(baton, local, prefix, rank)
    everyone = _gather(objects)
    commit = None
    if rank == 0:
        merged = {name: obj for part in everyone for name, obj in part.items()}
        state_key = ckpt_prefix(gen, leg_id) + "state.json"
        merged["state"] = _write_object(baton, state_key, _json_bytes(meta))
        commit = baton.commit_objects(parent_gen, gen, leg_id, merged, meta, None,
                                      save_seconds=time.perf_counter() - t0, format=SHARDED_FORMAT, world=len(everyone))
    shutil.rmtree(local, ignore_errors=True)
    return _broadcast(commit)


def _next_gen(baton: Baton) -> int:
    if baton.next_gen is None:
        gens = baton.gens()
        baton.next_gen = (gens[-1] if gens else 0) + 1
    return baton.next_gen


def _upload_own_files(baton: Baton, local: pathlib.Path, prefix: str, rank: int) -> dict:
    """This rank's DCP files (`__<rank>_*.distcp`; rank 0 also `.metadata`) into the store."""
    mine = sorted(p for p in local.iterdir() if p.name.startswith(f"__{rank}_"))
    if rank == 0:
        mine.append(local / METADATA_FILE)
    return {DCP_DIR + p.name: _write_object(baton, prefix + p.name, p.read_bytes()) for p in mine}


def _write_object(baton: Baton, key: str, data: bytes) -> dict:
    import hashlib

    baton.store.write(key, data)
    return {"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _json_bytes(meta: dict) -> bytes:
    import json

    return json.dumps(meta).encode()


def _broadcast(obj):
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj) -> list:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------------- load


def load_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, spec, baton: Baton, state: dict,
               staging: pathlib.Path) -> None:
    """Load a Baton training state (from `baton.load`) into `model` and `optimizer`, whatever the checkpoint's
    format and the model's wrapping: DCP files reshard onto this world size; a plain checkpoint loads into a
    plain model directly and into an FSDP model through full (unsharded) state dicts."""
    model = unwrap(model)
    if "sharded" in state:
        load_sharded(model, optimizer, baton, state["sharded"], staging)
    elif is_sharded(model):
        _load_full_into_sharded(model, optimizer, spec, state)
    else:
        restore(model, optimizer, state)


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, baton: Baton, commit: dict,
                 staging: pathlib.Path) -> None:
    local = staging / f"dcp-load-{commit['gen']:08d}-{commit['leg_id']}-{os.getpid()}"
    local.mkdir(parents=True, exist_ok=True)
    try:
        for name in commit["objects"]:
            if name.startswith(DCP_DIR):
                (local / name[len(DCP_DIR):]).write_bytes(baton._read_verified(commit, name))
        model_sd, optim_sd = get_state_dict(model, optimizer)
        loaded = {"model": model_sd, "optim": optim_sd}
        dcp.load(loaded, storage_reader=dcp.FileSystemReader(str(local)))
        set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _load_full_into_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, spec, state: dict) -> None:
    """A plain checkpoint into an FSDP model: restore it into a plain twin, then hand over full state dicts keyed
    by parameter name, from which every rank takes its own shards."""
    from relaytrain_runtime.model import empty_model
    from relaytrain_runtime.train import make_optimizer

    twin = empty_model(spec.model)
    twin_opt = make_optimizer(twin, spec)
    restore(twin, twin_opt, state)
    full = StateDictOptions(full_state_dict=True)
    model_sd, optim_sd = get_state_dict(twin, twin_opt, options=full)
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd, options=full)


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter, unsharded, on the CPU, by name (collective for FSDP: every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    sd = get_model_state_dict(unwrap(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return dict(sorted(sd.items()))
