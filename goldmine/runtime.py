"""Devices, precision, processes: what a training or inference run needs from its machine."""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass

import torch

from goldmine.errors import GoldmineError


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available, else cpu."""
    if spec == "auto":
        spec = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif spec == "cuda":
        spec = f"cuda:{local_rank}"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise GoldmineError(f"device: unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GoldmineError(f"device: {spec} requested but CUDA is not available here")
        if (device.index or 0) >= torch.cuda.device_count():
            raise GoldmineError(f"device: {spec} requested but only {torch.cuda.device_count()} GPU(s) present")
    return device


def resolve_precision(spec: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on CUDA GPUs that support it, else 'fp32'."""
    if spec == "auto":  # not bf16 on CPUs: without AMX their bf16 matmuls are slower than fp32
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return spec


def autocast(device: torch.device, precision: str):
    """Mixed precision context: weights stay fp32, matmuls run in bf16."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS at once.

    glibc returns every large block (activations are tens of MB) to the kernel when freed and
    page-faults it back in on the next step, which costs a training step on CPU up to a third
    of its time, and an int8 model (whose matmuls allocate twice per call) its whole speed-up.
    Training and inference commands call it on CPU; it is process-wide. Setting M_MMAP_MAX=0 and a high M_TRIM_THRESHOLD keeps the pages mapped (the
    advice PyTorch's CPU performance guide gives via jemalloc/tcmalloc, without a new library).
    Returns False where glibc is not the allocator.
    """
    if os.environ.get("GOLDMINE_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 and ok
        return ok
    except (OSError, AttributeError):
        return False


@dataclass
class Dist:
    """This process's place among torchrun's processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def init_distributed() -> Dist:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend=backend)
    return Dist(rank=rank, local_rank=local, world_size=world)
