"""The training-memory estimate, as the kit reads it: defined once in the runtime (relaytrain_runtime.memory),
where the handlers apply the same check before a spec is persisted."""

from relaytrain_runtime.memory import (  # noqa: F401 (re-exported for validation and the planner)
    GIB,
    GPU_CONTEXT_GIB,
    HEADROOM,
    RUNTIME_OVERHEAD_GIB,
    Memory,
    checkpoint_bytes,
    trainable_params,
    training_memory,
)
