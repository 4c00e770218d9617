"""The hardware catalog: peak FLOP/s by dtype, memory, bandwidth, power and an hourly price.

The numbers live in hardware.yaml beside this file (sources and units are documented there).
A user's `--hardware-file` is merged over it entry by entry and field by field, so a team can
put in its negotiated price without restating the data sheet. The `cpu` entry is measured on the
spot: its peak is a large matmul timed now, its memory this machine's RAM.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from goldmine.errors import GoldmineError

CATALOG = Path(__file__).with_name("hardware.yaml")
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
FIELDS = ("description", "match", "peak_tflops", "memory_gb", "memory_bandwidth_gbs", "power_w",
          "price_per_gpu_hour", "source", "measured")
CPU_DTYPES = ("fp32", "bf16")  # the dtypes a CPU matmul can be timed in at a useful speed


@dataclass(frozen=True)
class Hardware:
    """One device. Missing figures are None (a dtype without a fast path is absent)."""

    name: str
    description: str = ""
    peak_tflops: dict[str, float] = field(default_factory=dict)
    memory_gb: float | None = None
    memory_bandwidth_gbs: float | None = None
    power_w: float | None = None
    price_per_gpu_hour: float | None = None
    source: str = ""
    match: tuple[str, ...] = ()
    measured: bool = False

    def peak(self, dtype: str) -> float:
        """Peak dense FLOP/s for `dtype`; a GoldmineError names the dtypes it has."""
        if self.measured:
            if dtype not in CPU_DTYPES:
                raise GoldmineError(f"dtype: {dtype} is not measured on {self.name}; choose "
                                    f"one of {', '.join(CPU_DTYPES)}")
            import torch

            from goldmine.cost import measure_matmul_flops

            return measure_matmul_flops(dtype=torch.float32 if dtype == "fp32" else torch.bfloat16)
        if dtype not in self.peak_tflops:
            have = ", ".join(self.peak_tflops) or "none"
            raise GoldmineError(f"dtype: {self.name} has no published dense {dtype} peak; "
                                f"choose one of {have}")
        return self.peak_tflops[dtype] * 1e12

    @property
    def default_dtype(self) -> str:
        """What training on it would use: fp32 on a CPU (as `goldmine pretrain` does), else bf16,
        else fp16 (V100, T4), else the first dtype there is."""
        if self.measured:
            return "fp32"
        return next((d for d in ("bf16", "fp16") if d in self.peak_tflops),
                    next(iter(self.peak_tflops)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "peak_tflops": dict(self.peak_tflops), "memory_gb": self.memory_gb,
                "memory_bandwidth_gbs": self.memory_bandwidth_gbs, "power_w": self.power_w,
                "price_per_gpu_hour": self.price_per_gpu_hour, "source": self.source,
                "measured": self.measured}


def _number(value: Any, where: str, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise GoldmineError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def _entry(name: str, raw: dict[str, Any], where: str) -> Hardware:
    """A Hardware from a merged YAML mapping, every field checked and named on error."""
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise GoldmineError(f"{where}: {name}: unknown field(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(FIELDS)}")
    measured = bool(raw.get("measured", False))
    peaks = raw.get("peak_tflops") or {}
    if not isinstance(peaks, dict):
        raise GoldmineError(f"{where}: {name}.peak_tflops: expected a mapping of dtype: TFLOP/s")
    for dtype in peaks:
        if dtype not in DTYPES:
            raise GoldmineError(f"{where}: {name}.peak_tflops: unknown dtype {dtype!r}; "
                                f"known: {', '.join(DTYPES)}")
    peaks = {d: _number(v, f"{where}: {name}.peak_tflops.{d}") for d, v in peaks.items()}
    peaks = {d: v for d, v in peaks.items() if v is not None}
    if not peaks and not measured:
        raise GoldmineError(f"{where}: {name}.peak_tflops: give at least one dtype, e.g. "
                            "{bf16: 312}")
    memory = raw.get("memory_gb")
    if measured and memory is None:
        memory = _ram_gb()
    match = raw.get("match") or []
    if isinstance(match, str):
        match = [match]
    return Hardware(
        name=name, description=str(raw.get("description") or ""), peak_tflops=peaks,
        memory_gb=_number(memory, f"{where}: {name}.memory_gb", optional=measured),
        memory_bandwidth_gbs=_number(raw.get("memory_bandwidth_gbs"),
                                     f"{where}: {name}.memory_bandwidth_gbs"),
        power_w=_number(raw.get("power_w"), f"{where}: {name}.power_w"),
        price_per_gpu_hour=_number(raw.get("price_per_gpu_hour"),
                                   f"{where}: {name}.price_per_gpu_hour"),
        source=str(raw.get("source") or ""), match=tuple(str(m) for m in match),
        measured=measured)


def _ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise GoldmineError(f"hardware_file: {path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise GoldmineError(f"hardware_file: {path}{line}: not valid YAML") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise GoldmineError(f"hardware_file: {path}: expected a mapping of name: {{fields}}, "
                            "as in goldmine/cost/hardware.yaml")
    return {str(k).lower(): v for k, v in data.items()}


@cache
def _catalog(user_file: str | None) -> dict[str, Hardware]:
    raw = _read(CATALOG)
    where = {name: str(CATALOG) for name in raw}
    if user_file:
        for name, fields_ in _read(Path(user_file)).items():
            raw[name] = {**raw.get(name, {}), **fields_}
            where[name] = user_file
    return {name: _entry(name, entry, where[name]) for name, entry in raw.items()}


def load_catalog(hardware_file: str | Path | None = None) -> dict[str, Hardware]:
    """Every known device by name: the shipped catalog with `hardware_file` merged over it."""
    return dict(_catalog(str(hardware_file) if hardware_file else None))


def get_hardware(name: str, hardware_file: str | Path | None = None) -> Hardware:
    """A device by catalog name (case-insensitive); unknown names list the known ones."""
    catalog = load_catalog(hardware_file)
    key = str(name).strip().lower()
    if key not in catalog:
        raise GoldmineError(f"hardware: unknown {name!r}; known: {', '.join(catalog)} "
                            "(add your own with --hardware-file)")
    return catalog[key]


def match_device(device_name: str, hardware_file: str | Path | None = None) -> Hardware | None:
    """The catalog entry for a CUDA device name such as 'NVIDIA A100-SXM4-80GB': the entry with
    the longest `match` word found in the name (whole words, so 'L4' is not found in 'L40S')."""
    best, best_len = None, 0
    for hw in load_catalog(hardware_file).values():
        for word in hw.match:
            pattern = r"(?<![A-Za-z0-9])" + re.escape(word) + r"(?![A-Za-z0-9])"
            if len(word) > best_len and re.search(pattern, device_name, re.IGNORECASE):
                best, best_len = hw, len(word)
    return best
