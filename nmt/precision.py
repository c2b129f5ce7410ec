"""Numeric precision: which Keras dtype policy a run uses, and why. No TensorFlow at import.

`auto` picks the 16-bit units the machine has: mixed_float16 with a GPU, mixed_bfloat16 on a
CPU with bfloat16 arithmetic (AVX512-BF16 or AMX; `grep -o 'amx_bf16\\|avx512_bf16'
/proc/cpuinfo`), float32 on any other CPU, where 16-bit arithmetic is emulated and slower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, Path]
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

# /proc/cpuinfo flags of CPUs with bfloat16 arithmetic (AVX512-BF16 dot products, AMX tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


# Flags that matter to matrix products, as the benchmarks print them.
MATMUL_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_info(cpuinfo: PathLike = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """`(model name, flags)` of this CPU from /proc/cpuinfo (the platform's processor name and
    no flags where it cannot be read)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
        elif line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return model, flags


def cpu_description(cpuinfo: PathLike = "/proc/cpuinfo") -> str:
    """One line for benchmark reports: the CPU model and its matrix-product flags."""
    model, flags = cpu_info(cpuinfo)
    found = " ".join(f for f in MATMUL_CPU_FLAGS if f in flags)
    return f"{model}; flags: {found or 'none of AVX2+'}"


def cpu_bf16_flags(cpuinfo: PathLike = "/proc/cpuinfo") -> list[str]:
    """The bfloat16 flags this CPU reports (empty where there are none or no /proc/cpuinfo)."""
    flags = cpu_info(cpuinfo)[1]
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def resolve_precision(
    precision: str, gpu_visible: Optional[bool] = None, cpu_bf16: Optional[bool] = None
) -> str:
    """The Keras dtype policy for `train.precision` (see `explain_precision` for auto)."""
    return explain_precision(precision, gpu_visible, cpu_bf16)[0]


def explain_precision(
    precision: str, gpu_visible: Optional[bool] = None, cpu_bf16: Optional[bool] = None
) -> tuple[str, str]:
    """`(policy, why)`: auto = mixed_float16 with a GPU, mixed_bfloat16 on a CPU with bfloat16
    units (AVX512-BF16 or AMX), float32 on any other CPU; other values are kept as given."""
    if precision != "auto":
        return precision, "train.precision"
    if gpu_visible is None:
        import tensorflow as tf

        gpu_visible = bool(tf.config.list_physical_devices("GPU"))
    if gpu_visible:
        return "mixed_float16", "auto: a GPU is visible"
    flags = cpu_bf16_flags() if cpu_bf16 is None else (["bf16"] if cpu_bf16 else [])
    if flags:
        return "mixed_bfloat16", f"auto: this CPU has bfloat16 units ({', '.join(flags)})"
    return "float32", "auto: this CPU has no bfloat16 units"
