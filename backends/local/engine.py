"""Which training path a run takes. Pure, so the choice is tested without a GPU.

bitsandbytes 4-bit loads even on CPU, so the choice is made explicitly on `cuda_available`
rather than by trying. The chosen path is written into the run's result.
"""

from __future__ import annotations

ENGINES = ("auto", "unsloth", "hf")
QLORA = "qlora-cuda-nf4"
UNSLOTH = "unsloth-qlora-4bit"
CPU_LORA = "lora-cpu-fp32"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class EngineError(ValueError):
    pass


def choose_path(
    requested: str, cuda_available: bool, unsloth_installed: bool, data_parallel: bool = False,
) -> str:
    """QLoRA on CUDA (Unsloth when installed and allowed), plain float32 LoRA on CPU.

    Data-parallel jobs take the transformers path: Unsloth's open-source release trains on one
    GPU, so `auto` skips it and `unsloth` is refused."""
    if requested not in ENGINES:
        raise EngineError(f"engine must be one of {ENGINES}, got {requested!r}")
    if not cuda_available:
        if requested == "unsloth":
            raise EngineError("engine 'unsloth' needs a CUDA GPU and none is visible")
        return CPU_LORA
    if requested == "unsloth" and data_parallel:
        raise EngineError("engine 'unsloth' trains on one GPU; a data-parallel job (num_gpus "
                          "> 1) needs engine 'auto' or 'hf'")
    if data_parallel:
        return QLORA
    if requested == "unsloth" and not unsloth_installed:
        raise EngineError("engine 'unsloth' requested but the unsloth package is not installed")
    if requested in ("auto", "unsloth") and unsloth_installed:
        return UNSLOTH
    return QLORA
