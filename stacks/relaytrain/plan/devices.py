"""How fast a worker trains: sustained FLOP/s per GPU and per vCPU, calibratable on this machine.

Defaults are assumptions, not measurements: fp32 training (the runtime's precision, which keeps
legs and shards bit-exact) at 40 % of each GPU's fp32 peak from NVIDIA's data sheets, and 30 GFLOP/s
per vCPU for a CPU worker. `relaytrain plan --calibrate` replaces the per-vCPU figure with one
measured from real training steps on this machine and saves it (see `calibration_path`).
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import asdict, dataclass, field

from relaytrain_runtime import RelayError
from relaytrain_runtime.throughput import GPU_PEAK_FLOPS, peak_flops

MFU = 0.40
GPU_FP32_PEAK = {gpu: row["fp32"] for gpu, row in GPU_PEAK_FLOPS.items()}  # the runtime's table (MFU's peaks)
CPU_FLOPS_PER_VCPU = 30e9

# platform overheads (assumptions, stated in docs/PLANNER.md)
STORE_BYTES_PER_S = {"lambda": 150e6, "functions": 150e6, "vm": 500e6}  # object-store throughput per worker
COLD_START_S = {"lambda": 8.0, "functions": 8.0, "vm": 300.0}  # image pull + torch import; VM boot + setup
MULTI_GPU_EFFICIENCY = 0.9  # data-parallel scaling per extra GPU
SPOT_INTERRUPTIONS_PER_HOUR = 0.05
PREPROCESS_TOKENS_PER_VCPU_S = 0.5e6
ROUND_OVERHEAD_S = 0.5  # workflow step + HTTP invocation per function-shards round


@dataclass
class Devices:
    cpu_flops_per_vcpu: float = CPU_FLOPS_PER_VCPU
    gpu_flops: dict[str, float] = field(default_factory=lambda: {k: v * MFU for k, v in GPU_FP32_PEAK.items()})
    source: str = "defaults (assumed: 40 % of each GPU's peak at the run's precision, 30 GFLOP/s per vCPU)"
    gpu_mfu: dict[str, float] = field(default_factory=dict)  # measured on a node (`plan --calibrate STATUS`)

    def to_dict(self) -> dict:
        return asdict(self)

    def gpu_rate(self, gpu: str, precision: str) -> float:
        """Sustained FLOP/s of one `gpu` at a precision: its peak for that precision times the MFU measured on a
        node of that GPU, else the assumed MFU. An unset precision is the runtime's CUDA default, 16-bit mixed
        (bf16-mixed, or fp16-mixed on GPUs without bf16: the same tensor-core peak); fp32 keeps the fp32 rate."""
        precision = precision or "bf16-mixed"
        if gpu in self.gpu_mfu:
            return self.gpu_mfu[gpu] * peak_flops(gpu, precision)
        if precision in ("bf16-mixed", "fp16-mixed"):
            return MFU * peak_flops(gpu, precision)
        return self.gpu_flops[gpu]


def calibration_path() -> pathlib.Path:
    env = os.environ.get("RELAYTRAIN_CALIBRATION")
    if env:
        return pathlib.Path(env)
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    return cache / "relaytrain" / "calibration.json"


def load_devices(path: pathlib.Path | None = None) -> Devices:
    """Defaults, with the saved calibration applied when there is one."""
    path = path or calibration_path()
    devices = Devices()
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            if "cpu_flops_per_vcpu" in saved or "gpu_mfu" not in saved:
                devices.cpu_flops_per_vcpu = float(saved["cpu_flops_per_vcpu"])
            devices.gpu_mfu = {str(k): float(v) for k, v in saved.get("gpu_mfu", {}).items()}
            devices.source = f"calibrated {saved.get('measured', '')} on this machine ({path})".replace("  ", " ")
        except (ValueError, KeyError, TypeError) as exc:
            raise RelayError(f"{path}: not a calibration file ({exc!r}); delete it or run "
                             "`relaytrain plan FILE --calibrate` again") from None
    return devices


def calibrate_from_node_status(status_path: pathlib.Path, path: pathlib.Path) -> dict:
    """Save the MFU a node measured (its status JSON, `throughput` field) as that GPU's MFU in the calibration."""
    try:
        status = json.loads(status_path.read_text())
        measured = status["throughput"]
        gpu, mfu = str(measured["gpu"]), float(measured["mfu"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RelayError(f"{status_path}: not a node status with a measured throughput "
                         f"(expected {{\"throughput\": {{\"gpu\": ..., \"mfu\": ...}}}}; {exc!r})") from None
    if not 0 < mfu <= 1 or gpu not in GPU_PEAK_FLOPS:
        raise RelayError(f"{status_path}: throughput.mfu must be in (0, 1] and throughput.gpu one of "
                         f"{', '.join(GPU_PEAK_FLOPS)}; got mfu {mfu}, gpu {gpu!r}")
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved.setdefault("gpu_mfu", {})[gpu] = mfu
    saved["measured"] = f"node status {status_path.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    return saved
