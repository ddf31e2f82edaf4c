"""Numeric precision of a run on its device: autocast, the fp16 gradient scaler, TF32 matmuls.

    amp = Precision.for_run(spec, device)       # resolves the spec's precision ("" = the device's default)
    with amp.autocast():                         # inside forward_backward / evaluate
        loss = model(...)
    amp.backward(loss)                           # scaled for fp16-mixed
    amp.step(optimizer, clip)                    # unscale, clip, step, update the scale

Defaults per device: CPU fp32 (bitwise legs and shards); CUDA with bf16 (Ampere and newer)
bf16-mixed; older CUDA GPUs (V100, T4) fp16-mixed. Guarantees per precision and device are stated
in docs/GPU.md. Weights, gradients and optimizer moments stay fp32 in every mode (autocast runs the
matmuls in 16 bits), so a checkpoint is the same format whatever the precision: a run moves freely
between devices and precisions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed")
DTYPES = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


def default_precision(device: torch.device) -> str:
    """The precision a run gets on `device` when its spec leaves `precision` empty."""
    if device.type != "cuda":
        return "fp32"
    return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16-mixed"


def resolve(precision: str, device: torch.device) -> str:
    if not precision:
        return default_precision(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)} (or empty for the default)")
    return precision


def enable_tf32(device: torch.device) -> bool:
    """TF32 matmuls and convolutions on GPUs that have them (compute capability 8.0+). Returns whether on."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        return False
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    return True


@dataclass
class Precision:
    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def for_run(cls, spec, device: torch.device) -> Precision:
        name = resolve(getattr(spec, "precision", ""), device)
        scaler = torch.amp.GradScaler(device.type) if name == "fp16-mixed" else None
        return cls(name, device, scaler)

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, parameters, grad_clip: float) -> torch.Tensor:
        """Unscale (fp16), clip to `grad_clip` (0 = no clipping), step, update the scale. Returns the grad norm
        as a device tensor (no host sync); for fp16 a step with inf/nan gradients is skipped by the scaler."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        parameters = list(parameters)
        if grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        else:
            norm = torch.zeros((), device=self.device)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        return norm

    def state_dict(self) -> dict | None:
        """What travels in the checkpoint's meta (JSON): the fp16 loss scale and its growth tracker."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def node_throughput(spec, steps: int, seconds: float, world: int, device: torch.device, precision: str) -> dict:
    """Tokens/s, MFU and peak GPU memory of `steps` optimizer steps trained in `seconds` by `world` processes
    (for a node status and the run's metrics; see relaytrain_runtime.throughput.measure)."""
    from relaytrain_runtime.throughput import measure

    cuda = device.type == "cuda"
    return measure(tokens=steps * spec.tokens_per_step, seconds=seconds, model=spec.model,
                   seq_len=spec.sequence_length, world=world, gpu=device_gpu(device), precision=precision,
                   peak_memory_bytes=torch.cuda.max_memory_allocated(device) if cuda else None, spec=spec)


def device_gpu(device: torch.device) -> str | None:
    """The throughput table's GPU for a device (None on CPU or an unlisted GPU)."""
    from relaytrain_runtime.throughput import gpu_of_device_name

    return gpu_of_device_name(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
