"""`goldmine export`: a run in a format other tools read.

    export(run="sft-20261123-...", format="hf", out="my-model")
    export(run="finetune-...", format="onnx", out="sentiment-onnx")
    export(run="pretrain-...", format="gguf", gguf_type="q8_0")

What can go where:

    source                                   hf   onnx   gguf
    GPT: pretrain / finetune sft run,        yes  yes    yes
         checkpoint dir, HF Llama-family dir
    classifier: finetune classify run,       yes  yes    -
         HF sequence-classification dir

Everything is written into a temporary directory beside the destination and checked there
(the HF directory is loaded back by transformers, the ONNX graph is run by ONNX Runtime and
compared with PyTorch, the GGUF file is read back); only then is it renamed into place, so a
failure leaves nothing half-written. The export is a run in the registry whose parent is the
source run, and its README.md is a model card with the lineage.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldmine.config import ExportConfig
from goldmine.errors import GoldmineError
from goldmine.files import read_json
from goldmine.progress import info

COMMAND = "export"
FORMATS_OF = {"gpt": ("hf", "onnx", "gguf"), "chat": ("hf", "onnx", "gguf"),
              "classifier": ("hf", "onnx")}
# files of a classifier directory that describe it (copied into hf and onnx exports)
CLASSIFIER_FILES = ("config.json", "goldmine.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
                    "spiece.model", "sentencepiece.bpe.model", "spm.model", "added_tokens.json")


@dataclass
class Source:
    """What an export reads: `kind` gpt, chat or classifier; `path` the checkpoint or HF
    directory; `row` the registry row of its run (None for a directory from elsewhere)."""

    kind: str
    path: Path
    row: dict[str, Any] | None
    run_dir: Path | None
    adapter: Path | None = None
    model: Any = None
    tokenizer: Any = None
    meta: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.row["id"] if self.row else str(self.path)


# ---------------------------------------------------------------------------------------------
# what is being exported
# ---------------------------------------------------------------------------------------------
def _registry_row(ref: str) -> dict[str, Any] | None:
    from goldmine.registry import Registry, run_id_for_path

    p = Path(ref)
    if p.exists() and not run_id_for_path(p):
        return None
    try:
        return Registry().get(ref)
    except GoldmineError:
        if p.exists():
            return None  # a run directory copied from another machine: no registry row here
        raise GoldmineError(f"{ref}: no such run id or directory (see `goldmine runs list`)"
                            ) from None


def _is_classifier_dir(path: Path) -> bool:
    if (path / "goldmine.json").is_file():
        return True
    try:
        archs = read_json(path / "config.json", "config.json").get("architectures") or []
    except GoldmineError:
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def resolve_source(ref: str, checkpoint: str = "best") -> Source:
    """The run, checkpoint or HF directory `ref` names, with its kind (not yet loaded)."""
    from goldmine.baselines import cnn
    from goldmine.baselines.logreg import EXPORT_REFUSAL
    from goldmine.baselines.logreg import refuse as refuse_logreg
    from goldmine.checkpoint import resolve_checkpoint
    from goldmine.export.llama import is_hf_model_dir

    row = _registry_row(ref)
    if row is not None:
        run_dir = Path(row["run_dir"])
        command = row["command"]
        where = f"run {row['id']} (`goldmine {command}`, {row['status']})"
        if command == "finetune classify":
            model_dir = run_dir / "model"
            refuse_logreg(model_dir, EXPORT_REFUSAL)
            cnn.refuse(model_dir, cnn.EXPORT_REFUSAL)
            if not (model_dir / "config.json").is_file():
                raise GoldmineError(f"{where} has no model to export ({model_dir} is missing)")
            adapter = run_dir / "adapter"
            return Source("classifier", model_dir, row, run_dir,
                          adapter if adapter.is_dir() else None)
        if command in ("pretrain", "finetune sft"):
            try:
                path = resolve_checkpoint(run_dir, checkpoint)
            except GoldmineError as e:
                raise GoldmineError(f"{where} has no checkpoint to export ({e})") from None
            adapter = run_dir / "adapter"
            return Source("gpt", path, row, run_dir, adapter if adapter.is_dir() else None)
        if command == "quantize":
            raise GoldmineError(f"{where}: int8 models load in goldmine only; export the run it "
                                f"was quantized from ({', '.join(row['parents']) or 'its source'})")
        raise GoldmineError(f"{where}: export takes a model: a `pretrain`, `finetune sft` or "
                            "`finetune classify` run, a checkpoint or a Hugging Face directory")
    path = Path(ref)
    if not path.is_dir():
        raise GoldmineError(f"{ref}: expected a run or model directory, got a file")
    refuse_logreg(path, EXPORT_REFUSAL)
    cnn.refuse(path, cnn.EXPORT_REFUSAL)
    if is_hf_model_dir(path):
        return Source("classifier" if _is_classifier_dir(path) else "gpt", path, None, None)
    try:
        return Source("gpt", resolve_checkpoint(path, checkpoint), None, None)
    except GoldmineError as e:
        raise GoldmineError(f"{ref}: nothing to export ({e})") from None


def load_gpt(src: Source, merge_lora: bool) -> None:
    """Load the GPT of `src` (merging its LoRA adapter into the base weights with
    `merge_lora`); sets src.model, src.tokenizer, src.meta and src.kind (gpt or chat)."""
    from goldmine.checkpoint import load_model, refuse_quantized

    if merge_lora:
        model, tokenizer, meta = merge_gpt_lora(src)
    else:
        model, tokenizer, path = load_model(src.path, device="cpu")
        refuse_quantized(model, src.path, "exported")
        meta = _checkpoint_meta(path, tokenizer)
    src.model, src.tokenizer, src.meta = model.float().eval(), tokenizer, meta
    src.kind = "chat" if meta.get("chat") else "gpt"


def _checkpoint_meta(path: Path, tokenizer) -> dict[str, Any]:
    if (path / "config.json").is_file():
        meta = read_json(path / "config.json", "config.json")
        if meta.get("format"):  # a goldmine checkpoint
            return meta
    # an imported Hugging Face directory: its own framing
    return {"data": {"bos": bool(getattr(tokenizer, "add_bos", True)), "eos": True}}


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------
def _adapter_of(src: Source) -> Path:
    if src.adapter is None:
        raise GoldmineError(f"--merge-lora: {src.name} has no LoRA adapter (no adapter/ "
                            "directory); it was trained without --lora, export it without "
                            "--merge-lora")
    return src.adapter


def _base_ref(src: Source) -> str:
    base = (src.row or {}).get("config", {}).get("model")
    if not base:
        raise GoldmineError(f"--merge-lora: run {src.name} does not record its base model")
    return str(base)


def merge_gpt_lora(src: Source):
    """(merged GPT, tokenizer, checkpoint meta): the base model of a `finetune sft --lora` run
    with its adapter folded in, W + (alpha / r) B A."""
    from peft import PeftModel

    from goldmine.checkpoint import load_model
    from goldmine.export.llama import grow_vocab
    from goldmine.hf import quiet_transformers

    adapter, base = _adapter_of(src), _base_ref(src)
    try:
        model, _, _ = load_model(base, device="cpu")
    except GoldmineError as e:
        raise GoldmineError(f"--merge-lora: the base model of run {src.name} cannot be loaded "
                            f"({e})") from None
    # the run's own tokenizer and chat template (chat tokens may have been added in training)
    _, tokenizer, path = load_model(src.path, device="cpu")
    model = grow_vocab(model, tokenizer.vocab_size)
    with quiet_transformers():
        try:
            peft_model = PeftModel.from_pretrained(model, str(adapter))
        except (ValueError, KeyError, RuntimeError, OSError) as e:
            raise GoldmineError(f"{adapter}: adapter does not fit the base model {base} "
                                f"({str(e).splitlines()[0]})") from None
        merged = peft_model.merge_and_unload()
    return merged, tokenizer, _checkpoint_meta(path, tokenizer)


def merge_classifier_lora(src: Source):
    """The classifier of a `finetune classify --lora` run rebuilt from its backbone and
    adapter (head included), with the adapter folded in."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from goldmine.hf import quiet_transformers, resolve_backbone

    adapter = _adapter_of(src)
    cfg = read_json(src.path / "config.json", "config.json")
    labels = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]
    with tempfile.TemporaryDirectory() as work, quiet_transformers():
        # the backbone as fine-tuning saw it (a goldmine GPT is converted again, identically)
        backbone, _ = resolve_backbone(_base_ref(src), Path(work))
        base = AutoModelForSequenceClassification.from_pretrained(
            backbone, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)}, local_files_only=True)
        try:
            model = PeftModel.from_pretrained(base, str(adapter))
        except (ValueError, KeyError, RuntimeError, OSError) as e:
            raise GoldmineError(f"{adapter}: adapter does not fit the backbone {backbone} "
                                f"({str(e).splitlines()[0]})") from None
        return model.merge_and_unload().eval()


# ---------------------------------------------------------------------------------------------
# the formats
# ---------------------------------------------------------------------------------------------
def _copy_classifier_files(src_dir: Path, out: Path) -> list[str]:
    copied = []
    for name in CLASSIFIER_FILES:
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, out / name)
            copied.append(name)
    return copied


def _export_hf(src: Source, out: Path, cfg: ExportConfig) -> dict[str, Any]:
    if src.kind == "classifier":
        from safetensors.torch import save_file

        files = _copy_classifier_files(src.path, out)
        if cfg.merge_lora:
            model = merge_classifier_lora(src)
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      out / "model.safetensors", metadata={"format": "pt"})
        else:
            weights = [f for f in src.path.iterdir() if f.name.startswith("model")
                       and f.name.endswith((".safetensors", ".safetensors.index.json"))]
            if not weights:
                raise GoldmineError(f"{src.path}: no model.safetensors to export")
            for f in weights:
                shutil.copyfile(f, out / f.name)
        files += ["model.safetensors"]
        return {"files": files, "checks": check_hf_classifier(src, out)}
    from goldmine.export.hf import write_hf_llama

    files = write_hf_llama(src.model, src.tokenizer, src.meta, out)
    return {"files": files, "checks": check_hf_gpt(src, out)}


def check_hf_gpt(src: Source, out: Path) -> dict[str, Any]:
    """Load the export with transformers and compare its logits with goldmine's (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    from goldmine.hf import quiet_transformers

    with quiet_transformers():
        hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                  local_files_only=True).eval()
    ids = torch.randint(0, src.tokenizer.vocab_size, (2, min(16, src.model.config.block_size)),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (hf(ids).logits - src.model(ids)).abs().max().item()
    if not diff <= 1e-4:
        raise GoldmineError(f"export check: transformers' logits differ from goldmine's by "
                            f"{diff:.2e} (> 1e-4); nothing was written")
    return {"hf_max_abs_diff": diff}


def check_hf_classifier(src: Source, out: Path) -> dict[str, Any]:
    """Load the export with transformers and check it predicts like the source."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from goldmine.classifier import Classifier
    from goldmine.hf import quiet_transformers

    with quiet_transformers():
        hf = AutoModelForSequenceClassification.from_pretrained(
            out, dtype=torch.float32, local_files_only=True).eval()
    clf = Classifier.load(src.path, device="cpu")
    texts = ["a short example", "another, somewhat longer example of a text to classify"]
    enc = clf.tokenizer(texts, padding=True, truncation=True, max_length=clf.max_length,
                        return_tensors="pt")
    with torch.no_grad():
        exported = hf(**enc).logits
        source = clf.model(**enc).logits
    diff = (exported - source).abs().max().item()
    if not diff <= 1e-4:
        raise GoldmineError(f"export check: the exported classifier's logits differ from the "
                            f"run's by {diff:.2e} (> 1e-4); nothing was written")
    return {"hf_max_abs_diff": diff}


def _export_onnx(src: Source, out: Path, cfg: ExportConfig) -> dict[str, Any]:
    from goldmine.export import onnx

    if src.kind == "classifier":
        model_dir = src.path
        if cfg.merge_lora:  # the merged weights as an HF directory, then to ONNX
            from goldmine.hf import quiet_transformers

            model_dir = out / ".merged"
            model_dir.mkdir()
            _copy_classifier_files(src.path, model_dir)
            with quiet_transformers():
                merge_classifier_lora(src).save_pretrained(model_dir)
        res = onnx.export_classifier_onnx(model_dir, out, opset=cfg.opset)
        if cfg.merge_lora:
            shutil.rmtree(model_dir)
        files = _copy_classifier_files(src.path, out)
        return {"files": [*res["files"], *files], "checks": res["checks"]}
    from goldmine.export.hf import write_hf_llama

    res = onnx.export_gpt_onnx(src.model, out, opset=cfg.opset)
    files = write_hf_llama(src.model, src.tokenizer, src.meta, out, weights=False)
    return {"files": [*res["files"], *files], "checks": res["checks"]}


def _export_gguf(src: Source, out: Path, cfg: ExportConfig) -> dict[str, Any]:
    from goldmine.export.gguf import export_gguf

    name = src.row["id"] if src.row else src.path.name
    return export_gguf(src.model, src.tokenizer, src.meta, out / f"model-{cfg.gguf_type}.gguf",
                       tensor_type=cfg.gguf_type, name=name)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def _destination(cfg: ExportConfig, src: Source) -> Path | None:
    if cfg.out is None:
        return None
    out = Path(cfg.out).expanduser().resolve()
    if out.exists() and not cfg.overwrite:
        raise GoldmineError(f"out {cfg.out}: already exists; choose another directory or add "
                            "--overwrite (it is replaced only once the new export is complete)")
    if out.exists() and not out.is_dir():
        raise GoldmineError(f"out {cfg.out}: is a file")
    for mine in filter(None, (src.path, src.run_dir)):
        mine = mine.resolve()
        if out == mine or out in mine.parents or mine in out.parents:
            raise GoldmineError(f"out {cfg.out}: inside or around the source {mine}; export "
                                "somewhere else")
    return out


def export(cfg: ExportConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Export a run; returns where it went, the files and the checks made. `export(run=...,
    format=...)` or with an `ExportConfig`; keyword arguments override its fields."""
    from goldmine.checkpoint import replace_dir
    from goldmine.export.card import write_model_card
    from goldmine.registry import home, start_run

    cfg = (cfg or ExportConfig()).update(overrides, where=COMMAND)
    cfg.validate()
    src = resolve_source(cfg.run, cfg.checkpoint)
    if src.kind == "gpt":
        from goldmine.checkpoint import refuse_lstm

        refuse_lstm(src.path, src.name, "exported", ": the Hugging Face, ONNX and GGUF formats "
                    "hold Llama-style transformers; `goldmine generate` and `goldmine evaluate` "
                    "use the run as it is")
    if cfg.format not in FORMATS_OF[src.kind]:
        raise GoldmineError(f"format {cfg.format}: does not apply to {src.name}, a "
                            f"{src.kind}; it exports as {' or '.join(FORMATS_OF[src.kind])}")
    if cfg.merge_lora:
        _adapter_of(src)
    final = _destination(cfg, src)
    parent_dir = final.parent if final else home()
    parent_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent_dir, prefix=".export-"))
    config = {**cfg.to_dict(), "run": str(src.path if src.row is None else src.row["id"])}
    try:
        with start_run(COMMAND, config, out=staging) as run:
            run.add_parent_from_path(src.path)
            if src.kind != "classifier":
                info(f"loading {src.name}" + (" and merging its LoRA adapter"
                                              if cfg.merge_lora else ""))
                load_gpt(src, cfg.merge_lora)
            info(f"writing {cfg.format} and checking it")
            res = {"hf": _export_hf, "onnx": _export_onnx, "gguf": _export_gguf}[cfg.format](
                src, staging, cfg)
            labels = None
            if src.kind == "classifier":
                labels = (read_json(src.path / "goldmine.json", "goldmine.json").get("labels")
                          if (src.path / "goldmine.json").is_file() else None)
            title = (src.row or {}).get("id") or src.path.name
            write_model_card(staging, title=f"{title} ({src.kind}, {cfg.format})",
                             kind=src.kind, fmt=cfg.format, source=src.row, labels=labels,
                             metrics=res["checks"], license=cfg.license,
                             usage=usage_text(cfg.format, src.kind))
            files = [*res["files"], "README.md"]
            dest = final or (home() / run.id).resolve()
            run.log_metrics({k: v for k, v in res["checks"].items()
                             if isinstance(v, (int, float))})
            run.registry.update(run.id, run_dir=str(dest))
            for f in res["files"]:
                run.artifacts[f] = str(dest / f)
            run.registry.update(run.id, artifacts=run.artifacts)
            replace_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
    info(f"[green]exported {src.name} as {cfg.format} to {dest}[/green]")
    return {"run_id": run.id, "format": cfg.format, "kind": src.kind, "source": src.name,
            "out": str(dest), "files": files, "checks": res["checks"]}


def usage_text(fmt: str, kind: str) -> str:
    """How to load the export, for the model card."""
    if fmt == "hf" and kind == "classifier":
        return ("```python\nfrom transformers import pipeline\n"
                "clf = pipeline('text-classification', model='PATH')\n```")
    if fmt == "hf":
        return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
                "tok = AutoTokenizer.from_pretrained('PATH')\n"
                "model = AutoModelForCausalLM.from_pretrained('PATH')\n```\n\n"
                "Serve it with vLLM (`vllm serve PATH`) or TGI, or with `goldmine serve --model "
                "NAME=PATH`.")
    if fmt == "onnx":
        return ("```python\nimport onnxruntime\n"
                "session = onnxruntime.InferenceSession('PATH/model.onnx')\n```\n\n"
                "Inputs and outputs have dynamic batch and sequence axes."
                + (" The graph computes full-sequence logits (no KV cache)."
                   if kind != "classifier" else ""))
    return "Run it with llama.cpp: `llama-cli -m PATH/model-*.gguf`."
