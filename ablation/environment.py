"""The machine and software a run trained on, for its fairness record.

A reader placing two runs side by side must see where they differ: the device
(name, count, memory), CUDA and cuDNN, and the versions of torch, Lightning and the
suite. Versions are read from the installed distributions, so nothing here imports
Lightning.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import torch


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux) and this process's
    thread count: what a CPU step's time depends on."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                name,
            )
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def device_name(device: torch.device) -> str:
    """A name that tells machines apart: the GPU's, or the CPU's with its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def device_record(device: torch.device) -> dict[str, Any]:
    """Device name, count and memory (GiB), CUDA and cuDNN versions where present."""
    if device.type == "cuda":
        count = torch.cuda.device_count()
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
    else:
        count, memory = 1, _host_memory_gib()
    return {
        "device": device_name(device),
        "device_type": device.type,
        "device_count": count,
        "device_memory_gib": round(memory, 1) if memory else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
    }


def _host_memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def software_record() -> dict[str, Any]:
    """Versions of Python, torch, Lightning and the suite."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": _version("lightning"),
        "suite": _version("unet-ablation"),
    }
