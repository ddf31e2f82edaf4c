"""Training building blocks shared by every entry point (legs, nodes, shards).

    model, optimizer = build(spec, store=store)            # model from the seed or the base, AdamW
    loss = train_step(model, optimizer, spec, dataset, step)
    # or, split for data-parallel shards:
    loss = forward_backward(model, spec, batch)            # accumulate grads of one rank's slice
    apply_update(model, optimizer, spec, step)             # clip, set lr_at(step), optimizer step

Both take an optional `amp` (`relaytrain_runtime.precision.Precision`): autocast, and the fp16
gradient scaler; without one they train in fp32. The loss is accumulated on the model's device
(one host sync per step, none per micro-batch), and a DDP or FSDP model skips the gradient
all-reduce on every micro-batch but the last.

The LR schedule is a pure function of the step (`lr_at`), so its state is the step itself.
"""

from __future__ import annotations

import contextlib
import json
import math

import torch

from relaytrain_runtime.data import Dataset, batch, eval_batch
from relaytrain_runtime.lora import apply_lora, is_lora
from relaytrain_runtime.model import LanguageModel, build_model, empty_model, model_tensors
from relaytrain_runtime.precision import Precision


def make_optimizer(model: torch.nn.Module, spec) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices and embeddings (dim >= 2), none on biases and LayerNorm gains."""
    params = list(model_tensors(model).values())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": spec.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps,
                             **adamw_kernel(params[0].device if params else torch.device("cpu")))


def adamw_kernel(device: torch.device) -> dict:
    """AdamW's implementation by device: the fused CUDA kernel on GPUs; on CPU the per-tensor loop, whose
    arithmetic is the same whatever the parameter grouping (legs, nodes and shards stay bitwise equal)."""
    return {"fused": True} if device.type == "cuda" else {"foreach": False}


def build(spec, state: dict | None = None, store=None) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Model and optimizer: initialised from the seed (or a pretrained base), or, given a Baton training state,
    restored from it. `store` is the run's store: needed when the run starts from a pretrained base."""
    model = _base_model(spec, store, restoring=state is not None)
    if is_lora(spec):
        model = LanguageModel(apply_lora(model.hf, spec), model.model_config)
    optimizer = make_optimizer(model, spec)
    if state is not None:
        restore(model, optimizer, state)
    return model, optimizer


def _base_model(spec, store, restoring: bool) -> LanguageModel:
    """The model before any adapter. A full fine-tune being restored skips the init: the checkpoint
    overwrites every parameter. A LoRA run always needs its frozen base."""
    skip_init = restoring and not is_lora(spec)
    if not spec.init_from:
        return empty_model(spec.model) if skip_init else build_model(spec.model, seed=spec.seed)
    from relaytrain_runtime.pretrained import base_files, load_base, load_into, transformers_config_of

    if store is None:
        raise ValueError("a pretrained run needs its store to build the model (build(spec, state, store=...))")
    if skip_init:
        config = json.loads(base_files(store, spec.init_sha256, only=("config.json",))["config.json"])
        return empty_model(spec.model, transformers_config_of(config))
    config, tensors = load_base(store, spec.init_sha256)
    model = empty_model(spec.model, transformers_config_of(config))
    load_into(model.hf, tensors, f"{store.url} base/{spec.init_sha256}")
    return model


def lr_at(spec, step: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then cosine/linear/constant to min_lr."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return spec.lr
    span = max(spec.steps - spec.warmup_steps, 1)
    progress = min((step - spec.warmup_steps) / span, 1.0)
    if spec.schedule == "linear":
        return spec.lr + (spec.min_lr - spec.lr) * progress
    return spec.min_lr + 0.5 * (spec.lr - spec.min_lr) * (1.0 + math.cos(math.pi * progress))


def forward_backward(model: torch.nn.Module, spec, batch_: dict, scale: float = 1.0, amp=None) -> float:
    """Accumulate gradients of `batch_` in micro batches of spec.micro_batch; returns the mean loss.

    `scale` multiplies the gradients (e.g. 1/world for a rank's share of the global mean)."""
    model.train()
    ids, labels = batch_["input_ids"], batch_["labels"]
    n = ids.size(0)
    total = torch.zeros((), dtype=torch.float64, device=ids.device)
    starts = range(0, n, spec.micro_batch)
    for start in starts:
        chunk = slice(start, start + spec.micro_batch)
        weight = ids[chunk].size(0) / n
        with _gradient_sync(model, start == starts[-1]):
            with _autocast(amp):
                _, loss = model(ids[chunk], labels[chunk])
            _fp32(amp, ids.device).backward(loss * (weight * scale))
        total += loss.detach().to(torch.float64) * weight
    return float(total)


def _autocast(amp):
    return amp.autocast() if amp is not None else contextlib.nullcontext()


def _fp32(amp, device: torch.device) -> Precision:
    return amp if amp is not None else Precision("fp32", device)


def _gradient_sync(model: torch.nn.Module, last: bool):
    """No gradient all-reduce on accumulation micro-steps: DDP's no_sync(), FSDP2's requires_gradient_sync."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2 (fully_shard)
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    if not last and hasattr(model, "no_sync"):  # DistributedDataParallel
        return model.no_sync()
    return contextlib.nullcontext()


def apply_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, spec, step: int, amp=None) -> float:
    """Clip gradients, set the step's learning rate, take the optimizer step, clear gradients. Returns the grad norm."""
    lr = lr_at(spec, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    params = list(model.parameters())
    norm = _fp32(amp, params[0].device).step(optimizer, params, spec.grad_clip)
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def train_step(model, optimizer, spec, dataset: Dataset, step: int) -> float:
    """One full optimizer step on the global batch of `step`; returns its mean training loss."""
    loss = forward_backward(model, spec, batch(spec, step, 0, 1, dataset))
    apply_update(model, optimizer, spec, step)
    return loss


@torch.no_grad()
def evaluate(model: torch.nn.Module, spec, dataset: Dataset, batches: int | None = None, split: str = "val",
             amp=None) -> float:
    """Mean loss over the run's fixed held-out batches (same batches at every evaluation), computed on the
    model's device: every batch is moved there first."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = spec.eval_batches if batches is None else batches
    for i in range(count):
        b = eval_batch(spec, i, dataset, split)
        with _autocast(amp):
            loss = model(b["input_ids"].to(device, non_blocking=True), b["labels"].to(device, non_blocking=True))[1]
        total += loss.to(torch.float64)
    model.train(was_training)
    return float(total) / count


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a Baton training state (weights, optimizer) into a freshly built model and optimizer."""
    params = model_tensors(model)
    missing = sorted(set(params) - set(state["weights"]))
    if missing:
        raise ValueError(f"checkpoint lacks weights for {missing[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state["weights"][name])
    optimizer.load_state_dict(state["optimizer"])
