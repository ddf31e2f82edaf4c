"""Training-memory estimate of a run on one worker: the one check blueprint validation, the planner and the
handlers (before a spec is persisted) apply. Pure Python, no torch.

A full fine-tune (fp32 AdamW) holds weights (4 B/param), gradients (4 B/param) and two optimizer
moments (8 B/param). LoRA holds the frozen base (4 B/param, or 2 in bfloat16) without gradients or
optimizer state, and the adapters with all three; activations follow Korthikanti et al. 2022
("Reducing Activation Recomputation"), s*b*h*(34 + 5*a*s/h) bytes per layer for 16-bit tensors,
doubled for fp32; the LM head keeps logits, their softmax and its gradient (3 x b*s*V*4 B). An
estimate to reject the impossible, not a promise that anything just under the limit fits: a worker
must keep 10 % headroom. On a GPU
node the worker is one GPU (its memory from the catalog); `parallelism: fsdp` shards the weights,
gradients and moments over every GPU of the job (`shards`).
"""

from __future__ import annotations

from dataclasses import dataclass

from relaytrain_runtime.presets import ModelConfig
from relaytrain_runtime.throughput import trainable_params

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


def training_memory(model: ModelConfig, micro_batch: int, seq_len: int, gpu: bool = False, shards: int = 1,
                    spec=None) -> Memory:
    """Per worker (one GPU) training `model` at `micro_batch` x `seq_len`; `spec` gives the mode (finetune,
    base_dtype). `shards` > 1: FSDP over that many GPUs holds 1/shards of the weights, gradients and moments,
    plus the unsharded weights and gradients of the two blocks in flight (one computing, one prefetched)."""
    p, t = model.param_count(), trainable_params(model, spec)
    lora = spec is not None and spec.finetune == "lora"
    frozen = p * (2 if spec.base_dtype == "bfloat16" else 4) / shards if lora else 0
    s, b, h, a, L = seq_len, micro_batch, model.d_model, model.n_heads, model.n_layers
    per_layer = 2 * s * b * h * (34 + 5 * a * s / h)
    logits = 3 * b * s * model.vocab_size * 4
    overhead = (GPU_CONTEXT_GIB if gpu else RUNTIME_OVERHEAD_GIB) * GIB
    in_flight = 0 if shards <= 1 else 2 * (t - _embedding_params(model) * (not lora)) / max(L, 1)
    return Memory(4 * (t / shards + in_flight), 4 * (t / shards + in_flight), 8 * t / shards,
                  L * per_layer + logits, overhead, b, s, frozen)


def _embedding_params(model: ModelConfig) -> int:
    return (model.vocab_size + model.n_positions) * model.d_model


def checkpoint_bytes(model: ModelConfig, spec=None) -> int:
    """One checkpoint in the store: the trainable weights (fp32) and their two AdamW moments; a LoRA
    run's frozen base is stored once (base/), not per checkpoint."""
    return 12 * trainable_params(model, spec)


def refuse_if_it_cannot_fit(spec, memory_bytes: float, shards: int = 1) -> None:
    """Raise RelayError (one line) when `spec` cannot train in a CPU worker of `memory_bytes` (a Lambda, a
    function shard taking 1/shards of the batch): the check blueprint validation applies, run by a handler
    before an event's spec is persisted. A pretrained start not prepared yet has no shape to check."""
    from relaytrain_runtime import RelayError

    if spec.init_from and not spec.init_sha256:
        return
    micro = min(spec.micro_batch, max(spec.batch_size // max(shards, 1), 1))
    need = training_memory(spec.model, micro, spec.sequence_length, gpu=False, spec=spec)
    if not need.fits(memory_bytes):
        raise RelayError(f"spec: training needs {need.describe()}, more than {HEADROOM:.0%} of this worker's "
                         f"{memory_bytes / GIB:.1f} GiB; lower training.micro_batch_size or give the function "
                         "more memory")
