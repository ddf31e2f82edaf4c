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

MFU = 0.40
GPU_FP32_PEAK = {"V100": 15.7e12, "T4": 8.1e12, "A10G": 31.2e12, "L4": 30.3e12, "A100": 19.5e12}
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
    source: str = "defaults (assumed: 40 % of fp32 peak per GPU, 30 GFLOP/s per vCPU)"

    def to_dict(self) -> dict:
        return asdict(self)


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
            devices.cpu_flops_per_vcpu = float(saved["cpu_flops_per_vcpu"])
            devices.source = f"calibrated {saved.get('measured', '')} on this machine ({path})".replace("  ", " ")
        except (ValueError, KeyError, TypeError) as exc:
            raise RelayError(f"{path}: not a calibration file ({exc!r}); delete it or run "
                             "`relaytrain plan FILE --calibrate` again") from None
    return devices
