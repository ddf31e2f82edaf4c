"""Training-memory estimate of a run on one worker, shared by validation and the planner.

A full fine-tune (fp32 AdamW) holds weights (4 B/param), gradients (4 B/param) and two optimizer
moments (8 B/param). LoRA holds the frozen base (4 B/param, or 2 in bfloat16) without gradients or
optimizer state, and the adapters with all three; activations follow Korthikanti et al. 2022
("Reducing Activation Recomputation"), s*b*h*(34 + 5*a*s/h) bytes per layer for 16-bit tensors,
doubled for fp32; the LM head keeps logits, their softmax and its gradient (3 x b*s*V*4 B). An
estimate to reject the impossible, not a promise that anything just under the limit fits: a worker
must keep 10 % headroom.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaytrain_runtime.presets import ModelConfig

GIB = 1024**3
RUNTIME_OVERHEAD_GIB = 0.5  # Python + torch + the data pipeline in a CPU worker
GPU_CONTEXT_GIB = 0.75  # CUDA context and allocator reserve on a GPU
HEADROOM = 0.9  # the estimate must stay under 90 % of the worker's memory


@dataclass(frozen=True)
class Memory:
    weights: float  # bytes of trainable weights
    grads: float
    optimizer: float
    activations: float
    overhead: float
    micro_batch: int
    seq_len: int
    frozen: float = 0.0  # bytes of frozen (LoRA base) weights

    @property
    def total(self) -> float:
        return self.frozen + self.weights + self.grads + self.optimizer + self.activations + self.overhead

    def fits(self, worker_bytes: float) -> bool:
        return self.total <= HEADROOM * worker_bytes

    def describe(self) -> str:
        g = lambda x: f"{x / GIB:.1f}"  # noqa: E731
        frozen = f"frozen weights {g(self.frozen)} + trainable " if self.frozen else ""
        return (f"{g(self.total)} GiB ({frozen}weights {g(self.weights)} + gradients {g(self.grads)} + optimizer "
                f"{g(self.optimizer)} + activations {g(self.activations)} at micro-batch {self.micro_batch} x "
                f"{self.seq_len} tokens + runtime {g(self.overhead)})")


def trainable_params(model: ModelConfig, spec=None) -> int:
    """Parameters the run trains: all of them, or (spec.finetune == "lora") the adapters only."""
    if spec is None or spec.finetune != "lora":
        return model.param_count()
    targets = [t.strip() for t in spec.lora_targets.split(",") if t.strip()]
    return model.lora_param_count(spec.lora_rank, targets or None)


def training_memory(model: ModelConfig, micro_batch: int, seq_len: int, gpu: bool = False, spec=None) -> Memory:
    """Memory of training `model` at `micro_batch` x `seq_len`; `spec` gives the mode (finetune, base_dtype)."""
    p, t = model.param_count(), trainable_params(model, spec)
    lora = spec is not None and spec.finetune == "lora"
    frozen = p * (2 if spec.base_dtype == "bfloat16" else 4) if lora else 0
    s, b, h, a, L = seq_len, micro_batch, model.d_model, model.n_heads, model.n_layers
    per_layer = 2 * s * b * h * (34 + 5 * a * s / h)
    logits = 3 * b * s * model.vocab_size * 4
    overhead = (GPU_CONTEXT_GIB if gpu else RUNTIME_OVERHEAD_GIB) * GIB
    return Memory(4 * t, 4 * t, 8 * t, L * per_layer + logits, overhead, b, s, frozen)


def checkpoint_bytes(model: ModelConfig, spec=None) -> int:
    """One checkpoint in the store: the trainable weights (fp32) and their two AdamW moments; a LoRA
    run's frozen base is stored once (base/), not per checkpoint."""
    return 12 * trainable_params(model, spec)
