"""`goldmine cost`: what training and serving cost, and whether the business pays.

    cost_train(params=7e9, tokens=2e12, hardware="h100-sxm", gpus=8, mfu=0.4)
    cost_train(from_run="pretrain-2026...", params=1e9, tokens=20e9, hardware="h100-sxm")
    cost_optimal(budget=100_000, hardware="h100-sxm")      # Chinchilla: model size and tokens
    cost_memory(model="llama-7b", hardware="a100-80gb", gpus=8, sharded=True)
    cost_serve(from_bench="serve.json", hardware="cpu")    # $ per 1M input/output tokens
    cost_plan("plan.yaml", serving_cost_per_1m=0.6)         # monthly P&L and a verdict

Each takes its config dataclass (goldmine.config.Cost*Config) and/or keyword overrides, and
returns the dict that `goldmine cost ... --json` prints. The formulas live in the modules beside
this one (training, scaling, memory, serving; plan for the business plan); this module only
gathers their inputs: model shapes, the hardware catalog, a run's measured speed, a benchmark's
JSON, the server's recorded usage. Nothing here is recorded as a run: these are calculations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldmine.config import (
    CostMemoryConfig,
    CostOptimalConfig,
    CostPlanConfig,
    CostServeConfig,
    CostTrainConfig,
)
from goldmine.errors import GoldmineError


def _config(cls, cfg, overrides: dict[str, Any]):
    cfg = (cfg or cls()).update(overrides)
    cfg.validate()
    return cfg


def _price(hw, given: float | None) -> tuple[float | None, str | None]:
    if given is not None:
        return given, "given"
    if hw is not None and hw.price_per_gpu_hour is not None:
        return hw.price_per_gpu_hour, f"catalog ({hw.source})"
    return None, None


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def cost_train(cfg: CostTrainConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine cost train`: FLOPs, GPU-hours, wall time, energy and money of a training run
    (goldmine.cost.training); with `from_run`, a goldmine pretrain run's measured MFU is
    projected to the model, tokens, hardware and GPU count asked for."""
    from goldmine.cost import matmul_weights, param_count
    from goldmine.cost.hardware import get_hardware
    from goldmine.cost.training import measured_speed, resolve_model, training_cost

    cfg = _config(CostTrainConfig, cfg, overrides)
    run = measured_speed(cfg.from_run) if cfg.from_run else None
    arch = run["model"].get("arch") if run and run["model"] else None
    lstm = arch == "lstm"
    model = encoder = None
    if cfg.model:
        model = resolve_model(cfg.model, cfg.vocab_size)
    elif run and run["model"] and arch not in ("lstm", "bert"):
        model = resolve_model(run["model"], cfg.vocab_size)
    elif arch == "bert":  # `pretrain --objective mlm`: a transformer whose head sees 15% of tokens
        from goldmine.encoder import EncoderConfig

        encoder = EncoderConfig.from_dict(run["model"])
    if cfg.params:
        params = cfg.params
    elif model is not None:
        params = matmul_weights(model)
    elif encoder is not None:
        from goldmine.cost import encoder_matmul_weights

        layers, head = encoder_matmul_weights(encoder)
        params = layers + (run.get("mask_prob") or 0.15) * head
    elif lstm:  # no attention term: 6·N·D with N its matmul weights is all an LSTM costs
        from goldmine.cost import lstm_matmul_weights
        from goldmine.lstm import LSTMConfig

        params = lstm_matmul_weights(LSTMConfig.from_dict(run["model"]))
    else:
        params = run["params"]
        if not params:
            raise GoldmineError(f"params: run {run['run_id']} records no model; give --params")
    tokens = cfg.tokens or run["tokens"]
    if not tokens:
        raise GoldmineError(f"tokens: run {run['run_id']} records no tokens; give --tokens")
    hardware = cfg.hardware
    if hardware is None and run and str(run["device"]).startswith("cpu"):
        hardware = "cpu"
    hw = get_hardware(hardware, cfg.hardware_file) if hardware else None

    speed = {"mfu": cfg.mfu, "tokens_per_s": cfg.tokens_per_s, "step_time": cfg.step_time,
             "tokens_per_step": cfg.tokens_per_step, "gpu_hours": cfg.gpu_hours}
    mfu_from = None
    notes = []
    if run and not any(speed[k] is not None for k in ("mfu", "tokens_per_s", "step_time",
                                                      "gpu_hours")):
        speed["mfu"], mfu_from = _run_mfu(run, hw)
        if str(run["device"]).startswith("cpu") and hw is not None and not hw.measured:
            notes.append(f"the MFU was measured on a CPU (against its measured matmul peak); "
                         f"on {hw.name} large runs typically reach 0.3-0.5")

    result = training_cost(params, tokens, hw, cfg.gpus, model=model or encoder,
                           seq_len=cfg.seq_len,
                           dtype=cfg.dtype, price_per_gpu_hour=cfg.price_per_gpu_hour,
                           pue=cfg.pue, mfu_from=mfu_from, **speed)
    result["notes"] += notes
    result["model"] = cfg.model or (run["run_id"] if run and run["model"] else None)
    result["params_total"] = param_count(model) if model else None
    result["from_run"] = run and {k: run[k] for k in ("run_id", "mfu", "tokens_per_s",
                                                       "device", "precision", "world_size")}
    return result


def _run_mfu(run: dict[str, Any], hw) -> tuple[float, str]:
    """The MFU a pretrain run measured, or, when its device had no known peak, the MFU its
    tokens/s gives on `hw` (then taken to be the device it ran on)."""
    where = f"run {run['run_id']} ({run['world_size']} × {run['device']}, {run['precision']})"
    if run["mfu"] is not None:
        return run["mfu"], f"measured by {where}"
    if hw is None or not run.get("flops_per_token"):
        raise GoldmineError(f"hardware: {where} logged no MFU (its device has no known peak); "
                            "name the hardware it ran on with --hardware, so that its tokens/s "
                            "gives its MFU")
    dtype = "bf16" if run["precision"] == "bf16" else "fp32"
    mfu = run["tokens_per_s"] * run["flops_per_token"] / (hw.peak(dtype) * run["world_size"])
    return mfu, f"from the tokens/s of {where}, taken to be on {hw.name}"


# ---------------------------------------------------------------------------------------------
# optimal
# ---------------------------------------------------------------------------------------------
def cost_optimal(cfg: CostOptimalConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine cost optimal`: the compute-optimal model size and tokens for a budget (in
    FLOPs, USD or GPU-hours), or the tokens a given model needs, with the predicted loss
    (goldmine.cost.scaling); and what each point costs on `hardware`."""
    from goldmine.cost import matmul_weights
    from goldmine.cost.hardware import get_hardware
    from goldmine.cost.scaling import BESIROGLU, HOFFMANN, compute_optimal, tokens_for_model
    from goldmine.cost.training import resolve_model

    cfg = _config(CostOptimalConfig, cfg, overrides)
    hw = get_hardware(cfg.hardware, cfg.hardware_file) if cfg.hardware else None
    dtype = cfg.dtype or (hw.default_dtype if hw else None)
    peak = hw.peak(dtype) if hw else None
    price, price_from = _price(hw, cfg.price_per_gpu_hour)
    flops_per_gpu_hour = peak * cfg.mfu * 3600 if peak else None

    budget: dict[str, Any] = {}
    if cfg.params or cfg.model:
        params = cfg.params or matmul_weights(resolve_model(cfg.model, cfg.vocab_size))
        result = tokens_for_model(params, cfg.tokens_per_param)
        budget["from"] = "model size"
    else:
        if cfg.flops:
            flops, budget["from"] = cfg.flops, "FLOPs"
        elif cfg.gpu_hours:
            flops, budget["from"] = cfg.gpu_hours * flops_per_gpu_hour, "GPU-hours"
            budget["gpu_hours"] = cfg.gpu_hours
        else:
            if price is None:
                raise GoldmineError(f"price_per_gpu_hour: {hw.name} has no price in the "
                                    "catalog; give --price-per-gpu-hour")
            budget["usd"], budget["gpu_hours"] = cfg.budget, cfg.budget / price
            flops, budget["from"] = budget["gpu_hours"] * flops_per_gpu_hour, "USD"
        result = compute_optimal(flops, cfg.tokens_per_param)
    budget["flops"] = result["flops"]

    for point in result["points"].values():
        hours = point["flops"] / flops_per_gpu_hour if flops_per_gpu_hour else None
        point["gpu_hours"] = hours
        point["wall_days"] = hours / cfg.gpus / 24 if hours is not None else None
        point["cost_usd"] = hours * price if hours is not None and price is not None else None
    result.update({
        "budget": budget, "hardware": hw.name if hw else None, "gpus": cfg.gpus,
        "dtype": dtype, "mfu": cfg.mfu, "price_per_gpu_hour": price,
        "price_from": price_from,
        "fits": {f.name: {"E": f.E, "A": f.A, "B": f.B, "alpha": f.alpha, "beta": f.beta,
                          "source": f.source} for f in (HOFFMANN, BESIROGLU)},
        "formula": [f"rule: N = sqrt(C / (6 × {cfg.tokens_per_param:g})), "
                    f"D = {cfg.tokens_per_param:g} × N  (C = 6·N·D)",
                    "fit: L(N, D) = E + A/N^α + B/D^β; N_opt = G·(C/6)^(β/(α+β)), "
                    "G = (αA/(βB))^(1/(α+β))"],
        "notes": ["the published Hoffmann et al. constants (approach 3) put the optimum at a "
                  "smaller model on more tokens than the paper's approaches 1 and 2 (~20 tokens "
                  "per parameter, Chinchilla's 70B on 1.4T); Besiroglu et al. 2024's refit of "
                  "the same data agrees with the 20-tokens rule"] if "hoffmann" in
                 result["points"] else [],
    })
    return result


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def cost_memory(cfg: CostMemoryConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine cost memory`: will this model fit this hardware, for training (weights,
    gradients, optimizer, activations) or serving (weights, KV cache)? (goldmine.cost.memory)"""
    from goldmine.cost import param_count
    from goldmine.cost.hardware import get_hardware
    from goldmine.cost.memory import serving_memory, training_memory
    from goldmine.cost.training import resolve_model

    cfg = _config(CostMemoryConfig, cfg, overrides)
    hw = get_hardware(cfg.hardware, cfg.hardware_file)
    if hw.memory_gb is None:
        raise GoldmineError(f"hardware: {hw.name} has no memory size in the catalog; add "
                            "memory_gb with --hardware-file")
    model = resolve_model(cfg.model, cfg.vocab_size) if cfg.model else None
    if cfg.mode == "train":
        params = cfg.params or param_count(model)
        result = training_memory(params, hw.memory_gb, model, precision=cfg.precision,
                                 batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                                 checkpointing=cfg.checkpointing, gpus=cfg.gpus,
                                 sharded=cfg.sharded, reserve_gb=cfg.reserve_gb)
    else:
        result = serving_memory(model, hw.memory_gb, precision=cfg.precision,
                                kv_precision=cfg.kv_precision, concurrency=cfg.concurrency,
                                context=cfg.context, gpus=cfg.gpus, sharded=cfg.sharded,
                                reserve_gb=cfg.reserve_gb)
    result.update({"hardware": hw.name, "model": cfg.model})
    return result


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------
def cost_serve(cfg: CostServeConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine cost serve`: USD per 1M input and output tokens and per request from a
    measured throughput or a bench/serve.py result; with `usage`, the cost of what each API key
    used (goldmine.cost.serving)."""
    from goldmine.cost.hardware import get_hardware
    from goldmine.cost.serving import (
        DEFAULT_OUTPUT_TOKENS,
        DEFAULT_PROMPT_TOKENS,
        read_bench,
        serving_cost,
        usage_cost,
    )

    cfg = _config(CostServeConfig, cfg, overrides)
    bench = read_bench(cfg.from_bench) if cfg.from_bench else {}
    hw = get_hardware(cfg.hardware or "cpu", cfg.hardware_file)
    price, price_from = _price(hw, cfg.price_per_gpu_hour)
    if price is None:
        raise GoldmineError(f"price_per_gpu_hour: {hw.name} has no price in the catalog; give "
                            "--price-per-gpu-hour")
    result = serving_cost(
        cfg.tokens_per_s or bench["tokens_per_s"], price, cfg.gpus, cfg.utilization,
        prompt_tokens=cfg.prompt_tokens or bench.get("prompt_tokens") or DEFAULT_PROMPT_TOKENS,
        output_tokens=cfg.output_tokens or bench.get("output_tokens") or DEFAULT_OUTPUT_TOKENS,
        input_cost_ratio=cfg.input_cost_ratio, prefill_tokens_per_s=cfg.prefill_tokens_per_s)
    result.update({"hardware": hw.name, "price_from": price_from,
                   "throughput_from": f"bench {cfg.from_bench}" if cfg.from_bench else "given"})
    if cfg.usage:
        from goldmine.serve.store import ServeStore

        with ServeStore(cfg.db) as store:
            rows = store.usage(days=cfg.days)
        result["usage"] = usage_cost(rows, result["usd_per_1m_input_tokens"],
                                     result["usd_per_1m_output_tokens"])
    return result


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------
def cost_plan(cfg: CostPlanConfig | str | Path | None = None, **overrides: Any) -> dict[str, Any]:
    """`goldmine cost plan`: the business plan in goldmine.cost.plan (monthly P&L, break-even,
    sensitivity, charts, verdict), with serving and training costs from the other commands."""
    if isinstance(cfg, (str, Path)):
        cfg, overrides = None, {"plan": str(cfg), **overrides}
    cfg = _config(CostPlanConfig, cfg, overrides)
    from goldmine.cost.plan import EXAMPLE_PLAN, run_plan

    if cfg.init:
        from goldmine.files import write_text

        target = Path(cfg.init).expanduser()
        if target.exists():
            raise GoldmineError(f"init: {target} already exists; name a new file")
        if not target.parent.is_dir():
            raise GoldmineError(f"init: {target.parent} is not a directory")
        write_text(target, EXAMPLE_PLAN.read_text(encoding="utf-8"))
        return {"written": str(target), "from": str(EXAMPLE_PLAN)}
    return run_plan(cfg.plan or EXAMPLE_PLAN, serving_cost_per_1m_tokens=cfg.serving_cost_per_1m,
                    training_cost=cfg.training_cost, out=cfg.out, charts=cfg.charts)
