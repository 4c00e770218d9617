"""Evaluation: `evaluate` picks the right one for the model and options it is given."""

from __future__ import annotations

from typing import Any


def evaluate(cfg=None, **overrides: Any) -> dict[str, Any]:
    """`goldmine evaluate`: k-fold cross-validation with --folds (eval/crossval.py); for a GPT,
    perplexity on text or answers on conversations (eval/lm.py); else a classifier's metrics
    (eval/classify.py). The result's "kind" says which: crossval, lm, sft or classify."""
    from goldmine.config import EvaluateConfig
    from goldmine.runtime import tune_cpu_allocator

    cfg = (cfg or EvaluateConfig()).update(overrides)
    cfg.validate()
    tune_cpu_allocator()  # inference on CPU: keep freed activations mapped (see runtime.py)
    if cfg.folds:
        from goldmine.eval.crossval import cross_validate

        return {"kind": "crossval", **cross_validate(cfg)}
    from goldmine.eval.lm import evaluate_lm, is_language_model

    if cfg.model and is_language_model(cfg.model):
        res = evaluate_lm(cfg)
        return {"kind": res["task"], **res}
    from goldmine.eval.classify import evaluate_classifier

    return {"kind": "classify", **evaluate_classifier(cfg)}
