"""What serving costs: USD per 1M output tokens, per 1M input tokens and per request; and
USD per 1M predictions of a classifier (`cost_per_million`).

    cost of an output token = price per hour of the deployment / (3600 × output tokens/s × u)
    cost of an input token  = r × cost of an output token
    cost of a request       = prompt tokens × input cost + output tokens × output cost

The output tokens/s is measured at full load (many concurrent requests, as bench/serve.py
drives the server); u, the utilization, is the share of paid hours spent at that load (traffic
has peaks and troughs; 0.5 is a fair default for a service with daily cycles).

Input tokens are far cheaper than output tokens: a prompt is prefilled in one parallel pass
(compute-bound), while every output token is a decoding step that reads all the weights
(memory-bound). r is the measured decode/prefill throughput ratio when the prefill tokens/s is
given, and otherwise a stated default of 1/4, the ratio public API price lists use (OpenAI,
Anthropic, Google in 2024-2025 charge input at 1/4 to 1/5 of output). A throughput measured
under a workload that also prefilled its prompts already paid for them, so this errs on the
expensive side.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from goldmine.errors import GoldmineError

DEFAULT_INPUT_COST_RATIO = 0.25
DEFAULT_PROMPT_TOKENS = 500
DEFAULT_OUTPUT_TOKENS = 250
MILLION = 1e6


def serving_cost(tokens_per_s: float, price_per_gpu_hour: float, gpus: int = 1,
                 utilization: float = 0.5, prompt_tokens: float = DEFAULT_PROMPT_TOKENS,
                 output_tokens: float = DEFAULT_OUTPUT_TOKENS,
                 input_cost_ratio: float = DEFAULT_INPUT_COST_RATIO,
                 prefill_tokens_per_s: float | None = None) -> dict[str, Any]:
    """USD per 1M input and output tokens and per request (see the module docstring)."""
    ratio, ratio_from = input_cost_ratio, f"default {input_cost_ratio:g} (API price lists)"
    if prefill_tokens_per_s:
        ratio = tokens_per_s / prefill_tokens_per_s
        ratio_from = (f"measured: {tokens_per_s:,.0f} output tokens/s / "
                      f"{prefill_tokens_per_s:,.0f} prefill tokens/s")
    per_hour = price_per_gpu_hour * gpus
    output_cost = per_hour / (3600 * tokens_per_s * utilization)
    input_cost = ratio * output_cost
    per_request = prompt_tokens * input_cost + output_tokens * output_cost
    return {
        "tokens_per_s": tokens_per_s, "gpus": gpus, "price_per_gpu_hour": price_per_gpu_hour,
        "price_per_hour": per_hour, "utilization": utilization,
        "input_cost_ratio": ratio, "input_cost_ratio_from": ratio_from,
        "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
        "usd_per_1m_output_tokens": output_cost * MILLION,
        "usd_per_1m_input_tokens": input_cost * MILLION,
        "usd_per_request": per_request,
        "requests_per_hour": 3600 * tokens_per_s * utilization / output_tokens,
        "formula": [
            f"output: ${per_hour:g}/h / (3600 × {tokens_per_s:,.1f} tokens/s × {utilization:g}) "
            f"× 1e6 = ${output_cost * MILLION:,.4g} per 1M output tokens",
            f"input: {ratio:.3g} × output = ${input_cost * MILLION:,.4g} per 1M input tokens "
            f"(ratio {ratio_from})",
            f"request: {prompt_tokens:,.0f} × input + {output_tokens:,.0f} × output = "
            f"${per_request:.4g}"],
    }


def cost_per_million(examples_per_s: float, price_per_hour: float,
                     utilization: float = 0.5) -> float:
    """USD per 1M predictions (classifications, embeddings: one output per example) of a
    deployment that costs `price_per_hour` and handles `examples_per_s` at full load, busy a
    share `utilization` of its paid hours: the per-token formula above, one prediction per
    token. Used by `goldmine compare`."""
    if examples_per_s <= 0 or price_per_hour < 0 or not 0 < utilization <= 1:
        raise GoldmineError(f"cost per million: needs examples/s > 0 (got {examples_per_s}), "
                            f"a price >= 0 (got {price_per_hour}) and a utilization in (0, 1] "
                            f"(got {utilization})")
    return price_per_hour / (3600 * examples_per_s * utilization) * MILLION


def read_bench(path: str | Path) -> dict[str, Any]:
    """The throughput and request shape from a file holding the JSON object bench/serve.py
    prints: {tokens_per_s, prompt_tokens, output_tokens, clients}."""
    p = Path(path)
    if not p.is_file():
        raise GoldmineError(f"from_bench: {p}: file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise GoldmineError(f"from_bench: {p}: not one JSON object ({e}); save what "
                            "bench/serve.py prints on stdout") from None
    if not isinstance(data, dict):
        raise GoldmineError(f"from_bench: {p}: expected a JSON object, got "
                            f"{type(data).__name__}")
    tps = data.get("goldmine_tokens_per_s")
    if not isinstance(tps, (int, float)) or isinstance(tps, bool) or tps <= 0:
        raise GoldmineError(f"from_bench: {p}: no positive 'goldmine_tokens_per_s' (the JSON "
                            "bench/serve.py prints)")
    workload = data.get("workload") or {}
    server = (data.get("servers") or {}).get("goldmine") or {}
    return {"tokens_per_s": float(tps),
            "prompt_tokens": server.get("mean_prompt_tokens") or workload.get("prompt_tokens"),
            "output_tokens": data.get("goldmine_mean_tokens_per_request")
            or workload.get("max_tokens"),
            "clients": workload.get("clients"), "cpus": data.get("cpus")}


def usage_cost(rows: list[dict[str, Any]], usd_per_1m_input: float,
               usd_per_1m_output: float) -> list[dict[str, Any]]:
    """Cost per API key of the usage rows `ServeStore.usage()` returns (one per day, key and
    model), summed over the days, most expensive first."""
    keys: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "days": set()})
    for r in rows:
        k = keys[r["key"]]
        k["requests"] += r["requests"]
        k["prompt_tokens"] += r["prompt_tokens"]
        k["completion_tokens"] += r["completion_tokens"]
        k["days"].add(r["day"])
    out = []
    for key, k in keys.items():
        cost = (k["prompt_tokens"] * usd_per_1m_input
                + k["completion_tokens"] * usd_per_1m_output) / MILLION
        out.append({"key": key, "days": len(k["days"]), "requests": k["requests"],
                    "prompt_tokens": k["prompt_tokens"],
                    "completion_tokens": k["completion_tokens"], "cost_usd": cost,
                    "usd_per_request": cost / k["requests"] if k["requests"] else None})
    return sorted(out, key=lambda r: -r["cost_usd"])
