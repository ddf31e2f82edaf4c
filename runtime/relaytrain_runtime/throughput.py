"""Measured throughput: tokens per second, model FLOPs utilisation (MFU) and peak GPU memory.

Pure Python (no torch import): the kit's planner uses the same FLOPs-per-token and the same peaks.

    flops_per_token(model_config, seq_len)       # 6 x params (matmuls) + 12 x layers x d_model x seq (attention)
    peak_flops("H100", "bf16-mixed")             # dense peak of one GPU for a precision (None when unknown)
    mfu(tokens_per_s, flops_per_token, peak, world)   # one step's MFU (each train record of the metrics)
    measure(...)                                 # the numbers a node status and its metrics carry

FLOPs per token follow the PaLM paper's appendix B (position embeddings excluded). Peaks are NVIDIA's
data-sheet dense figures (no sparsity); fp32 on GPUs with TF32 (Ampere and newer) counts the TF32 peak,
since the runtime turns TF32 matmuls on there. A10G is AWS's variant of the A10: its figures are the A10's
(unverified for the A10G itself).
"""

from __future__ import annotations

TFLOPS = 1e12
# GPU -> {"fp32", "tf32" (if any), "16bit" (bf16 where supported, else fp16 tensor cores)}, dense, per GPU
GPU_PEAK_FLOPS = {
    "V100": {"fp32": 15.7 * TFLOPS, "16bit": 125 * TFLOPS},
    "T4": {"fp32": 8.1 * TFLOPS, "16bit": 65 * TFLOPS},
    "A10G": {"fp32": 31.2 * TFLOPS, "tf32": 62.5 * TFLOPS, "16bit": 125 * TFLOPS},
    "L4": {"fp32": 30.3 * TFLOPS, "tf32": 60 * TFLOPS, "16bit": 121 * TFLOPS},
    "A100": {"fp32": 19.5 * TFLOPS, "tf32": 156 * TFLOPS, "16bit": 312 * TFLOPS},
    "A100-80GB": {"fp32": 19.5 * TFLOPS, "tf32": 156 * TFLOPS, "16bit": 312 * TFLOPS},
    "L40S": {"fp32": 91.6 * TFLOPS, "tf32": 183 * TFLOPS, "16bit": 362 * TFLOPS},
    "H100": {"fp32": 67 * TFLOPS, "tf32": 495 * TFLOPS, "16bit": 989 * TFLOPS},
    "H200": {"fp32": 67 * TFLOPS, "tf32": 495 * TFLOPS, "16bit": 989 * TFLOPS},
}
# substrings of torch.cuda.get_device_name() -> GPU, most specific first ("L40S" before "L4")
_NAME_MATCH = (("H200", "H200"), ("H100", "H100"), ("A100-SXM4-80GB", "A100-80GB"), ("A100 80GB", "A100-80GB"),
               ("A100", "A100"), ("L40S", "L40S"), ("A10G", "A10G"), ("L4", "L4"), ("V100", "V100"), ("T4", "T4"))


def trainable_params(model, spec=None) -> int:
    """Parameters a run trains: all of them, or (spec.finetune == "lora") the adapters only."""
    if spec is None or spec.finetune != "lora":
        return model.param_count()
    targets = [t.strip() for t in spec.lora_targets.split(",") if t.strip()]
    return model.lora_param_count(spec.lora_rank, targets or None)


def flops_per_token(model, seq_len: int, spec=None) -> float:
    """Training FLOPs per token (forward + backward) of a ModelConfig at `seq_len`: 6 x the matmul parameters
    (forward 2, backward 4) plus attention. LoRA (spec.finetune == "lora") runs forward and the activation half
    of backward through the frozen base (4 x its parameters, no weight gradients) and all of it through the
    adapters (6 x theirs). Learned position lookups cost no FLOPs (rotary models have none)."""
    learned = {"gpt": model.n_positions * model.d_model,
               "bert": (model.n_positions + model.type_vocab_size) * model.d_model}.get(model.family, 0)
    attention = 12 * model.n_layers * model.d_model * seq_len
    matmul = model.param_count() - learned
    if spec is not None and spec.finetune == "lora":
        return 4 * matmul + 6 * trainable_params(model, spec) + attention
    return 6 * matmul + attention


def gpu_of_device_name(name: str) -> str | None:
    """The GPU table's key for a CUDA device name such as "NVIDIA H100 80GB HBM3" (None when unknown)."""
    for needle, gpu in _NAME_MATCH:
        if needle in name:
            return gpu
    return None


def peak_flops(gpu: str | None, precision: str) -> float | None:
    """Dense peak FLOP/s of one `gpu` for a resolved precision (fp32 | bf16-mixed | fp16-mixed)."""
    row = GPU_PEAK_FLOPS.get(gpu or "")
    if row is None:
        return None
    if precision in ("bf16-mixed", "fp16-mixed"):
        return row["16bit"]
    return row.get("tf32", row["fp32"])


def mfu(tokens_per_s: float, flops_per_token_: float, peak: float | None, world: int) -> float | None:
    """Model FLOPs utilisation of `world` devices of dense peak `peak` training `tokens_per_s` (all devices
    together) at `flops_per_token_`; None where the peak is unknown (CPU, an unlisted GPU)."""
    return tokens_per_s * flops_per_token_ / (peak * world) if peak and world else None


def measure(*, tokens: int, seconds: float, model, seq_len: int, world: int, gpu: str | None, precision: str,
            peak_memory_bytes: int | None = None, spec=None) -> dict:
    """Throughput of `tokens` trained in `seconds` by `world` devices of kind `gpu`: tokens/s (all devices),
    MFU (None where the device's peak is unknown, e.g. CPU; the run's `spec` counts LoRA's FLOPs) and the peak
    GPU memory of this process in GiB."""
    rate = tokens / seconds if seconds > 0 else 0.0
    mfu_ = mfu(rate, flops_per_token(model, seq_len, spec), peak_flops(gpu, precision), world)
    return {"tokens_per_s": round(rate, 1), "mfu": None if mfu_ is None else round(mfu_, 4), "gpu": gpu,
            "precision": precision,
            "peak_memory_gib": None if peak_memory_bytes is None else round(peak_memory_bytes / 1024**3, 3)}
