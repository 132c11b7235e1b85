"""Small helpers shared by the benchmark scripts: timing, peak memory, FLOP counting, the machine's
matmul rate, environment facts and a Markdown table.

Timing synchronises the device around every repetition, so a number is the wall time of the work,
not of the kernel launches. Peak memory is the CUDA allocator's peak on a GPU; on CPU it is the
process's resident set (RSS) above the level before the call, sampled every millisecond by a thread
(a lower bound, and it includes anything else the process allocates meanwhile).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    from tora2.errors import InputError

    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Seconds per repetition (after warm-up)."""

    seconds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        """The fastest repetition: on a shared machine the least disturbed one."""
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max − min) / median: how noisy the repetitions were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.seconds else 0.0


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 3) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronised each time)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    timing = Timing()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        timing.seconds.append(time.perf_counter() - start)
    return timing


# ---------------------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_SIZE


try:
    import os

    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    _PAGE_SIZE = 4096


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes`` (absolute allocator peak on CUDA,
    RSS rise above the start on CPU) and ``peak.kind`` saying which."""

    def __init__(self, device: torch.device, interval_s: float = 0.001):
        self.device = device
        self.interval_s = interval_s
        self.bytes = 0
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "CPU RSS rise (sampled)"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, start: int) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, _rss_bytes() - start)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, args=(_rss_bytes(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()


# ---------------------------------------------------------------------------------------- FLOPs
def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel (torch 2.13).
EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of matmuls, convolutions and attention that ``fn`` runs."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


def measure_matmul_rate(
    device: torch.device, dtype: torch.dtype, size: int = 8192, warmup: int = 2, repeats: int = 5
) -> float:
    """FLOP/s of a ``size``×``size`` @ ``size``×``size`` matmul in ``dtype`` on ``device`` (best repetition)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    timing = time_call(lambda: a @ b, device, warmup=warmup, repeats=repeats)
    return 2 * size**3 / timing.best


# ---------------------------------------------------------------------------------------- environment
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def environment(device: torch.device, packages: Iterable[str] = ("torch", "diffusers", "accelerate", "torchao")) -> dict[str, str]:
    """Machine and software facts to print beside the numbers."""
    info = {"python": platform.python_version()}
    info.update({name: _version(name) for name in packages})
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
        info["cuda"] = str(torch.version.cuda)
        info["cudnn"] = str(torch.backends.cudnn.version())
    else:
        info["device"] = f"CPU: {cpu_model()}, {torch.get_num_threads()} threads"
    return info


# ---------------------------------------------------------------------------------------- tables
def format_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """A Markdown table; missing cells are left blank, floats as given (format them before)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def format_bytes(n: float | None) -> str:
    if n is None:
        return ""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**24 else f"{n / 2**20:.2f} MiB"


def format_seconds(s: float | None) -> str:
    return "" if s is None else f"{s * 1e3:.0f} ms" if s < 10 else f"{s:.1f} s"
