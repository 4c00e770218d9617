"""The model card (README.md) that every export and quantization writes beside the model.

    ---                                  Hugging Face front matter: license, library, tags
    license: apache-2.0
    ...
    ---
    # sentiment (goldmine finetune classify)
    ## Intended use      what the model is for and how to load it
    ## Lineage           the source run and its ancestors from the registry, oldest first:
                         command, run id, the data each read
    ## Metrics           the source run's scalar metrics (and the export's own checks)
    ## Limitations       what the card cannot vouch for

The lineage is read from the registry (`Run.parents`), so a card says which prepared dataset,
tokenizer and pretraining run a model came from without anyone typing it in.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from goldmine.files import write_text

# what each kind of model is for, in one paragraph of the card
INTENDED_USE = {
    "gpt": "Text continuation: a decoder-only language model pretrained by goldmine. It "
           "continues text in the style of its training corpus; it was not tuned to follow "
           "instructions.",
    "chat": "Conversation: a decoder-only language model tuned on chat transcripts with "
            "goldmine's chat template (kept in tokenizer_config.json). It answers in the domain "
            "of its tuning data.",
    "classifier": "Text classification into the labels below, for texts like those it was "
                  "fine-tuned on.",
}
# config keys whose values are the data a run read (shown in the lineage)
DATA_KEYS = ("data", "inputs", "tokenizer", "model", "init_from", "corpus")


def lineage(run_id: str | None, registry=None) -> list[dict[str, Any]]:
    """The run `run_id` and all its ancestors, oldest first (each once)."""
    if not run_id:
        return []
    from goldmine.errors import GoldmineError
    from goldmine.registry import Registry

    reg = registry or Registry()
    seen: dict[str, dict[str, Any]] = {}
    todo = [run_id]
    while todo:
        rid = todo.pop()
        if rid in seen:
            continue
        try:
            row = reg.get(rid)
        except GoldmineError:  # a parent deleted from the registry: the chain stops there
            continue
        seen[rid] = row
        todo.extend(row.get("parents") or [])
    return sorted(seen.values(), key=lambda r: r["started"])


def _data_of(row: dict[str, Any]) -> str:
    config = row.get("config") or {}
    parts = []
    for key in DATA_KEYS:
        value = config.get(key)
        if value in (None, "", []):
            continue
        value = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}: `{value}`")
    return "; ".join(parts) or "-"


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (metrics or {}).items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool) and len(str(v)) < 80}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def model_card(*, title: str, kind: str, fmt: str, source: dict[str, Any] | None = None,
               labels: list[str] | None = None, metrics: dict[str, Any] | None = None,
               license: str = "other", usage: str = "", notes: list[str] | tuple = (),
               registry=None) -> str:
    """The card's Markdown. `kind`: gpt, chat or classifier. `source`: the registry row of the
    run the model came from (None for a directory from elsewhere). `metrics`: the export's own
    numbers (checks, sizes), listed after the source run's."""
    from goldmine import __version__

    tags = ["goldmine", {"gpt": "text-generation", "chat": "text-generation",
                         "classifier": "text-classification"}.get(kind, kind), fmt]
    front = [
        "---",
        f"license: {license}",
        "library_name: " + {"hf": "transformers", "onnx": "onnx", "gguf": "gguf"}.get(fmt, fmt),
        f"pipeline_tag: {tags[1]}",
        "tags:",
        *[f"- {t}" for t in dict.fromkeys(tags)],
        "---",
        "",
    ]
    lines = [f"# {title}", "",
             f"Exported by goldmine {__version__} on {time.strftime('%Y-%m-%d')} "
             f"(format: {fmt}).", "",
             "## Intended use", "", INTENDED_USE.get(kind, ""), ""]
    if labels:
        lines += ["Labels: " + ", ".join(f"`{x}`" for x in labels) + ".", ""]
    if usage:
        lines += [usage.strip(), ""]

    lines += ["## Lineage", ""]
    chain = lineage(source["id"], registry) if source else []
    if chain:
        lines += ["| step | run | status | data |", "|---|---|---|---|"]
        for row in chain:
            lines.append(f"| `goldmine {row['command']}` | `{row['id']}` | {row['status']} | "
                         f"{_data_of(row)} |")
        lines.append("")
    else:
        lines += ["Not a goldmine run: no lineage is recorded for this model.", ""]

    lines += ["## Metrics", ""]
    rows = {**_scalar_metrics(source.get("metrics") if source else {}), **(metrics or {})}
    if rows:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in rows.items()]
    else:
        lines.append("No metrics recorded.")
    lines += ["", "## Limitations", "",
              "Metrics hold for data like the evaluation data above; check the model on your "
              "own before relying on it. The training data's licenses bind the model: the "
              f"license field above (`{license}`) was set at export time.", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(front + lines).rstrip() + "\n"


def write_model_card(out_dir: Path, **kwargs) -> Path:
    """Write `model_card(**kwargs)` to out_dir/README.md."""
    path = Path(out_dir) / "README.md"
    write_text(path, model_card(**kwargs))
    return path
