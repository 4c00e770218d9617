"""What a pretraining run costs: FLOPs, GPU-hours, wall time, energy and money.

    C         = 6·N·D + 12·L·T·C·D          training FLOPs (goldmine.cost.training_flops)
    wall time = C / (gpus × peak × MFU)      peak: dense FLOP/s of one device at the dtype
    GPU-hours = wall time × gpus
    energy    = board power × GPU-hours × PUE
    money     = GPU-hours × price per GPU-hour

The speed comes from exactly one of: an MFU (assumed 0.4 when nothing else is given: large
dense runs on A100/H100 report 0.35-0.55), a measured throughput in tokens/s (or a step time
and the tokens per step), the GPU-hours of a known run (which then gives its MFU), or the MFU a
goldmine pretrain run measured (`from_run`), projected to the size and hardware asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goldmine.cost import flops_formula, matmul_weights, param_count, training_flops
from goldmine.cost.hardware import Hardware, get_hardware
from goldmine.errors import GoldmineError

DEFAULT_MFU = 0.4
# Vocabulary of the model presets' namesakes (goldmine takes it from the tokenizer at training
# time; a cost estimate has no tokenizer): GPT-2's BPE, Llama 3.2 1B's and Llama 2 7B's.
PRESET_VOCAB = {"gpt2-124m": 50257, "gpt2-350m": 50257, "llama-1b": 128256, "llama-7b": 32000}
FALLBACK_VOCAB = 8192


def training_cost(params: float, tokens: float, hardware: Hardware | str | None = None,
                  gpus: int = 1, mfu: float | None = None,
                  price_per_gpu_hour: float | None = None, *, model=None,
                  seq_len: int | None = None, dtype: str | None = None,
                  tokens_per_s: float | None = None, step_time: float | None = None,
                  tokens_per_step: float | None = None, gpu_hours: float | None = None,
                  pue: float = 1.0, hardware_file: str | Path | None = None,
                  mfu_from: str | None = None) -> dict[str, Any]:
    """The cost of training `params` weights (the N of 6·N·D) on `tokens` tokens.

    `model`: a GPTConfig, for the attention term at context `seq_len` (default block_size).
    Speed: at most one of `mfu`, `tokens_per_s`, `step_time` (with `tokens_per_step`) and
    `gpu_hours`; none means MFU 0.4. `dtype` sets the peak (default: the device's
    `default_dtype`). Without `hardware` only the FLOPs (and, from a throughput or GPU-hours,
    the wall time) can be known; the rest is None. `mfu_from` says where a given MFU came from.
    """
    given = [k for k, v in (("mfu", mfu), ("tokens_per_s", tokens_per_s),
                            ("step_time", step_time), ("gpu_hours", gpu_hours)) if v is not None]
    if len(given) > 1:
        raise GoldmineError(f"{', '.join(given)}: give only one way to set the speed")
    if step_time is not None:
        if not tokens_per_step:
            raise GoldmineError("tokens_per_step: --step-time needs the tokens per step too")
        tokens_per_s = tokens_per_step / step_time
    hw = get_hardware(hardware, hardware_file) if isinstance(hardware, str) else hardware

    L = C = T = None
    if model is not None:
        L, C, T = model.n_layer, model.n_embd, seq_len or model.block_size
    f = training_flops(params, tokens, L, C, T)
    flops_per_token = f["flops"] / tokens
    notes: list[str] = []

    dtype = dtype or (hw.default_dtype if hw is not None else "bf16")
    peak = hw.peak(dtype) if hw is not None else None
    cluster_peak = peak * gpus if peak else None
    if tokens_per_s is not None:
        speed = "throughput"
        wall_s = tokens / tokens_per_s
        mfu = tokens_per_s * flops_per_token / cluster_peak if cluster_peak else None
        speed_from = (f"step time {step_time:g} s for {tokens_per_step:,.0f} tokens"
                      if step_time is not None else "measured tokens/s")
    elif gpu_hours is not None:
        speed = "gpu_hours"
        wall_s = gpu_hours * 3600 / gpus
        tokens_per_s = tokens / wall_s
        mfu = f["flops"] / (gpu_hours * 3600 * peak) if peak else None
        speed_from = f"{gpu_hours:,.0f} GPU-hours"
    else:
        speed = "mfu"
        speed_from = mfu_from or ("given MFU" if mfu is not None else
                                  f"assumed MFU {DEFAULT_MFU} (typical of large dense runs)")
        mfu = DEFAULT_MFU if mfu is None else mfu
        wall_s = f["flops"] / (cluster_peak * mfu) if cluster_peak else None
        tokens_per_s = tokens / wall_s if wall_s else None
    if mfu is not None and mfu > 1:
        notes.append(f"MFU {mfu:.2f} is above 1, faster than the hardware's peak: check the "
                     "throughput, --gpus and --dtype")

    hours = wall_s * gpus / 3600 if wall_s is not None else None
    price = price_per_gpu_hour
    price_from = "given"
    if price is None and hw is not None:
        price, price_from = hw.price_per_gpu_hour, f"catalog ({hw.source})"
    power = hw.power_w if hw is not None else None
    if hw is None:
        notes.append("no --hardware: only FLOPs (and time, from a throughput) are computed")
    elif power is None:
        notes.append(f"{hw.name} has no board power in the catalog: no energy estimate")

    result = {
        "params": params, "tokens": tokens, "n_layer": L, "n_embd": C, "seq_len": T,
        "hardware": hw.name if hw else None, "gpus": gpus, "dtype": dtype,
        "peak_flops_per_gpu": peak, "mfu": mfu, "speed": speed, "speed_from": speed_from,
        "tokens_per_s": tokens_per_s,
        "flops": f["flops"], "flops_6nd": f["flops_6nd"], "flops_attention": f["flops_attention"],
        "flops_per_token": flops_per_token,
        "wall_s": wall_s, "wall_hours": wall_s / 3600 if wall_s is not None else None,
        "wall_days": wall_s / 86400 if wall_s is not None else None,
        "gpu_hours": hours, "power_w": power, "pue": pue,
        "energy_kwh": power * hours * pue / 1000 if power and hours is not None else None,
        "price_per_gpu_hour": price, "price_from": price_from if price is not None else None,
        "cost_usd": hours * price if hours is not None and price is not None else None,
        "notes": notes,
    }
    result["explain"] = explain_training(result)
    return result


def explain_training(r: dict[str, Any]) -> list[str]:
    """The formulas of `training_cost` with its numbers substituted, one step a line."""
    lines = flops_formula(r["params"], r["tokens"], r["n_layer"], r["n_embd"], r["seq_len"])
    if r["wall_s"] is None:
        return lines
    if r["speed"] == "throughput":
        lines.append(f"time = D / tokens/s = {r['tokens']:.4g} / {r['tokens_per_s']:.4g} = "
                     f"{r['wall_s']:.4g} s")
        if r["mfu"] is not None:
            lines.append(f"MFU = tokens/s × C/D / (gpus × peak) = {r['tokens_per_s']:.4g} × "
                         f"{r['flops_per_token']:.4g} / ({r['gpus']} × "
                         f"{r['peak_flops_per_gpu']:.4g}) = {r['mfu']:.3f}")
    elif r["speed"] == "gpu_hours":
        lines.append(f"time = GPU-hours × 3600 / gpus = {r['wall_s']:.4g} s")
        if r["mfu"] is not None:
            lines.append(f"MFU = C / (GPU-hours × 3600 × peak) = {r['flops']:.4g} / "
                         f"({r['gpu_hours']:.4g} × 3600 × {r['peak_flops_per_gpu']:.4g}) = "
                         f"{r['mfu']:.3f}")
    else:
        lines.append(f"time = C / (gpus × peak × MFU) = {r['flops']:.4g} / ({r['gpus']} × "
                     f"{r['peak_flops_per_gpu']:.4g} × {r['mfu']:.3g}) = {r['wall_s']:.4g} s "
                     f"({r['wall_hours']:.4g} h)")
    lines.append(f"GPU-hours = time × gpus / 3600 = {r['wall_s']:.4g} × {r['gpus']} / 3600 = "
                 f"{r['gpu_hours']:.4g}")
    if r["energy_kwh"] is not None:
        lines.append(f"energy = board power × GPU-hours × PUE = {r['power_w']:g} W × "
                     f"{r['gpu_hours']:.4g} h × {r['pue']:g} = {r['energy_kwh']:.4g} kWh")
    if r["cost_usd"] is not None:
        lines.append(f"cost = GPU-hours × price = {r['gpu_hours']:.4g} × "
                     f"${r['price_per_gpu_hour']:g} = ${r['cost_usd']:,.2f}")
    return lines


# ---------------------------------------------------------------------------------------------
# the model's shape: presets, config files, runs
# ---------------------------------------------------------------------------------------------
def resolve_model(ref: str | dict[str, Any], vocab_size: int | None = None):
    """A GPTConfig from a model preset name, a goldmine run (id or directory), a checkpoint
    directory, a mapping of GPTConfig fields, or a file: a goldmine checkpoint/run config.json,
    a Hugging Face config.json, or a YAML/JSON mapping of GPTConfig fields (n_layer, n_embd, ...;
    `model: PRESET` with overrides, as in a pretrain config, works too). `vocab_size` overrides
    the one found."""
    from goldmine.config import MODEL_PRESETS

    if isinstance(ref, dict):
        return _build(ref, vocab_size, "model")
    if ref in MODEL_PRESETS:
        values = {"vocab_size": PRESET_VOCAB.get(ref, FALLBACK_VOCAB), **MODEL_PRESETS[ref]}
        return _build(values, vocab_size, f"preset {ref}")
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise GoldmineError(f"model: {ref}: a directory without config.json (give a run, a "
                                "checkpoint, a Hugging Face directory or a config file)")
    if path.is_file():
        return _build(_model_values(path), vocab_size, str(path))
    from goldmine.registry import Registry

    try:
        row = Registry().get(ref)
    except GoldmineError:
        raise GoldmineError(f"model: {ref!r} is neither a model preset ({', '.join(MODEL_PRESETS)})"
                            ", a file nor a run") from None
    values = row["config"].get("resolved_model") or row["config"].get("model")
    if not isinstance(values, dict):
        raise GoldmineError(f"model: run {row['id']} ({row['command']}) records no model shape; "
                            "give a pretrain run, a checkpoint or a config file")
    return _build(values, vocab_size, f"run {row['id']}")


def _build(values: dict[str, Any], vocab_size: int | None, where: str):
    from goldmine.model import GPTConfig

    if values.get("arch") == "lstm":
        raise GoldmineError(f"model: {where} is an LSTM (`pretrain --arch lstm`); the model "
                            "options size GPTs. Price an LSTM run with --from-run (its 6·N·D "
                            "has no attention term) or give --params")
    if values.get("arch") == "bert":
        raise GoldmineError(f"model: {where} is a BERT-style encoder (`pretrain --objective mlm`); "
                            "the model options size GPTs. Price an encoder run with --from-run, "
                            "or give --params")
    if vocab_size:
        values = {**values, "vocab_size": vocab_size}
    try:
        return GPTConfig.from_dict(values)
    except (TypeError, ValueError) as e:
        raise GoldmineError(f"model: {where}: {e}") from None


def _model_values(path: Path) -> dict[str, Any]:
    from goldmine.config import MODEL_PRESETS, load_yaml

    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise GoldmineError(f"model: {path}: not valid JSON ({e})") from None
    else:
        data = load_yaml(path)
    if not isinstance(data, dict):
        raise GoldmineError(f"model: {path}: expected a mapping of model fields")
    if isinstance(data.get("model"), dict):          # goldmine checkpoint or run config.json
        return data["model"]
    if "hidden_size" in data:                        # a Hugging Face config.json
        from types import SimpleNamespace

        from goldmine.export.llama import from_hf_config

        hf = SimpleNamespace(**{"model_type": "llama", "rms_norm_eps": 1e-5,
                                "max_position_embeddings": 2048, **data})
        return from_hf_config(hf).to_dict()
    preset = data.get("model")
    if isinstance(preset, str):                      # a pretrain config: preset + overrides
        if preset not in MODEL_PRESETS:
            raise GoldmineError(f"model: {path}: unknown model preset {preset!r}")
        values = {"vocab_size": PRESET_VOCAB.get(preset, FALLBACK_VOCAB), **MODEL_PRESETS[preset]}
        return {**values, **{k: v for k, v in data.items() if v is not None and k != "model"}}
    return data


def model_params(model) -> dict[str, int]:
    """{"params": all parameters, "params_in_matmuls": the N of 6·N·D (PaLM's count)}."""
    return {"params": param_count(model), "params_in_matmuls": matmul_weights(model)}


# ---------------------------------------------------------------------------------------------
# a goldmine pretrain run's measured speed
# ---------------------------------------------------------------------------------------------
def measured_speed(ref: str) -> dict[str, Any]:
    """What a goldmine pretrain run measured: {run_id, mfu, tokens_per_s, device, precision,
    world_size, tokens, params, flops_per_token, model (its GPTConfig dict or None)}."""
    from goldmine.registry import Registry

    try:
        row = Registry().get(ref)
    except GoldmineError as e:
        raise GoldmineError(f"from_run: {e}") from None
    if row["command"].split()[0] != "pretrain":
        raise GoldmineError(f"from_run: {row['id']} is a `{row['command']}` run; give a "
                            "`goldmine pretrain` run (see `goldmine runs list --command pretrain`)")
    m = row["metrics"]
    if not m.get("tokens_per_s"):
        raise GoldmineError(f"from_run: {row['id']} has no measured tokens/s (status "
                            f"{row['status']}); it must have logged at least once")
    return {"run_id": row["id"], "mfu": m.get("mfu"), "tokens_per_s": m["tokens_per_s"],
            "device": m.get("device"), "precision": m.get("precision"),
            "world_size": m.get("world_size") or 1, "tokens": m.get("tokens"),
            "params": m.get("params"), "flops_per_token": m.get("flops_per_token"),
            "model": row["config"].get("resolved_model"),
            "mask_prob": row["config"].get("mask_prob")}
