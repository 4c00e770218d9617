"""Compute-optimal model size and data (Chinchilla), and the loss they predict.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models") fit the final loss of
400+ runs as

    L(N, D) = E + A / N^α + B / D^β        E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28

(their approach 3). Minimising it under C = 6·N·D gives

    N_opt = G · (C/6)^(β/(α+β)),   D_opt = (C/6)^(α/(α+β)) / G,   G = (αA / (βB))^(1/(α+β)).

Their approaches 1 and 2 instead find N_opt and D_opt both growing as C^0.5, about 20 tokens per
parameter: Chinchilla itself is 70B parameters on 1.4T tokens for Gopher's 5.76e23 FLOPs. The
published approach-3 constants do not agree with that: their optimum for the same budget is a
~32B model on ~3.0T tokens (93 tokens per parameter). Besiroglu et al. 2024 ("Chinchilla
Scaling: A replication attempt") refit the paper's own data and found the published fit cannot
be reproduced; their refit (E = 1.8172, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658) agrees
with approaches 1 and 2 (~72B on ~1.3T tokens for that budget). All three answers are reported, so the discrepancy is visible rather
than hidden; the 20-tokens rule is the headline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LossFit:
    """L(N, D) = E + A/N^α + B/D^β."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str


HOFFMANN = LossFit("hoffmann", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
                   source="Hoffmann et al. 2022, approach 3 (published constants)")
BESIROGLU = LossFit("besiroglu", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                    source="Besiroglu et al. 2024, refit of Hoffmann et al.'s data")
TOKENS_PER_PARAM = 20.0


def loss(fit: LossFit, params: float, tokens: float) -> float:
    """The fit's predicted final training loss (nats per token on MassiveText)."""
    return fit.E + fit.A / params ** fit.alpha + fit.B / tokens ** fit.beta


def fit_optimum(fit: LossFit, flops: float) -> tuple[float, float]:
    """(N_opt, D_opt) minimising `loss` under 6·N·D = flops (closed form, see module docstring)."""
    a, b = fit.alpha, fit.beta
    G = (a * fit.A / (b * fit.B)) ** (1 / (a + b))
    n = G * (flops / 6) ** (b / (a + b))
    return n, flops / (6 * n)


def rule_optimum(flops: float, tokens_per_param: float = TOKENS_PER_PARAM) -> tuple[float, float]:
    """(N, D) with D = k·N and 6·N·D = flops: N = sqrt(flops / (6k))."""
    n = math.sqrt(flops / (6 * tokens_per_param))
    return n, tokens_per_param * n


def compute_optimal(flops: float, tokens_per_param: float = TOKENS_PER_PARAM) -> dict:
    """The compute-optimal (N, D) for a budget by the tokens-per-parameter rule and by each
    loss fit, with each fit's predicted loss at each point."""
    points = {"rule": rule_optimum(flops, tokens_per_param),
              HOFFMANN.name: fit_optimum(HOFFMANN, flops),
              BESIROGLU.name: fit_optimum(BESIROGLU, flops)}
    return {"flops": flops, "tokens_per_param": tokens_per_param,
            "points": {name: _point(n, d) for name, (n, d) in points.items()}}


def tokens_for_model(params: float, tokens_per_param: float = TOKENS_PER_PARAM) -> dict:
    """For a given model size: the compute-optimal tokens (k·N), the FLOPs they take, and the
    fits' predicted loss there."""
    tokens = tokens_per_param * params
    return {"flops": 6 * params * tokens, "tokens_per_param": tokens_per_param,
            "points": {"rule": _point(params, tokens)}}


def _point(n: float, d: float) -> dict:
    return {"params": n, "tokens": d, "tokens_per_param": d / n, "flops": 6 * n * d,
            "loss_hoffmann": loss(HOFFMANN, n, d), "loss_besiroglu": loss(BESIROGLU, n, d)}
