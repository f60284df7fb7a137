"""What this machine can do, read once: the number format and the threads the LLM engines use
when the settings leave them to Muse (``MUSE_LLM_DTYPE=auto``, ``MUSE_LLM_THREADS=0``).

Machines of the same kind differ (design.md): on an AMD EPYC with AVX2 but no bf16 instructions,
bfloat16 ran the ranking forward 5.7x slower than float32 (4.7 s against 0.82 s); on a CPU with
AVX512-BF16, vLLM in bfloat16 prefilled and decoded about 1.8x faster than in float32
(docs/llm-serving.md). So bfloat16 is chosen only where the hardware computes it natively.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

# x86 flags (as /proc/cpuinfo spells them) of instructions that compute on bfloat16 directly.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
DTYPES = ("bfloat16", "float32", "float16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first processor in ``cpuinfo`` (empty where the file is absent
    or has no ``flags`` line, e.g. on a non-Linux system)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def choose_dtype(flags: frozenset[str], cuda: bool = False) -> str:
    """``bfloat16`` on a CUDA GPU or a CPU with native bf16 instructions (AVX512-BF16 or AMX),
    else ``float32`` (float16 is not chosen: CPUs without bf16 have no fast fp16 either)."""
    return "bfloat16" if cuda or flags & BF16_FLAGS else "float32"


@cache
def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_dtype(dtype: str) -> str:
    """A dtype setting -> the dtype to load weights in: ``auto`` reads this machine; any other
    value is returned as given. Raises ValueError for a name outside ``auto`` and ``DTYPES``."""
    if dtype == "auto":
        return choose_dtype(cpu_flags(), _cuda_available())
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto or one of {', '.join(DTYPES)}")
    return dtype


def usable_cores() -> int:
    """Processors this process may run on (its affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int) -> int:
    """A thread-count setting -> threads: 0 means every usable core."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = every usable core), got {threads}")
    return threads or usable_cores()


def resolve_in_flight(limit: int, cores: int | None = None) -> int:
    """The admission setting (``MUSE_LLM_MAX_IN_FLIGHT``) -> answers whose texts the LLM writes
    at once: 0 means one per usable core (``cores``, default ``usable_cores()``), at least 1.
    Raises ``ValueError`` for a negative setting."""
    if limit < 0:
        raise ValueError(f"MUSE_LLM_MAX_IN_FLIGHT must be >= 0 (0 = one per usable core), got {limit}")
    return limit or max(1, cores if cores is not None else usable_cores())
