"""What the server serves: `NAME=PATH` specs loaded into language models, encoders and
classifiers, each with the few methods the HTTP layer needs.

    PATH                                            kind          endpoint
    goldmine GPT run / checkpoint (finetune sft)    chat          /v1/chat/completions, /v1/completions
    goldmine GPT run / checkpoint (pretrain)        completion    /v1/completions (chat: goldmine's template)
    local HF Llama / Mistral / Qwen2 directory      chat|completion  as above; its own chat_template
    `finetune classify` run / HF classifier dir     classify      /v1/classify
    `minilm` / local HF encoder directory           embedding     /v1/embeddings

Chat prompts are rendered with the template stored in the checkpoint, the one training used:
goldmine's own (`goldmine.chat`), or the Jinja `chat_template` of a Hugging Face directory.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from goldmine.errors import GoldmineError
from goldmine.serve.engine import Engine, EngineConfig

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass
class ServedLM:
    """A GPT behind the engine."""

    name: str
    path: Path
    engine: Engine
    tokenizer: Any                         # goldmine.tokenizer.Tokenizer
    chat_meta: dict | None                 # goldmine's template, when tuned with finetune sft
    hf_tokenizer: Any = None               # transformers tokenizer with its own chat_template
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def kind(self) -> str:
        return "chat" if self.chat_meta or self.hf_tokenizer is not None else "completion"

    @property
    def context(self) -> int:
        return self.engine.context

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the conversation, ending where the assistant's answer starts."""
        if self.hf_tokenizer is not None:
            ids = self.hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                        tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return list(ids)
        from goldmine import chat

        return chat.prompt_ids(self.tokenizer, messages)

    def chat_stop_ids(self) -> tuple[int, ...]:
        ids = {self.tokenizer.eos_id}
        end = self.tokenizer.token_to_id("<|end|>")
        if end is not None and (self.chat_meta or self.hf_tokenizer is None):
            ids.add(end)
        if self.hf_tokenizer is not None and self.hf_tokenizer.eos_token_id is not None:
            ids.add(int(self.hf_tokenizer.eos_token_id))
        return tuple(i for i in ids if i is not None)

    def completion_prompt(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, bos=getattr(self.tokenizer, "add_bos", True))

    def completion_stop_ids(self) -> tuple[int, ...]:
        return (self.tokenizer.eos_id,)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def describe(self) -> dict:
        return {"kind": self.kind, "context_length": self.context}


@dataclass
class ServedEncoder:
    """A BERT-family encoder: mean-pooled, L2-normalized sentence embeddings."""

    name: str
    path: Path
    model: Any
    tokenizer: Any
    max_length: int
    device: Any
    created: int = field(default_factory=lambda: int(time.time()))
    kind: str = "embedding"

    def embed(self, texts: list[str], batch_size: int = 32) -> tuple[list[list[float]], int]:
        """(one unit vector per text, tokens read)."""
        out: list[list[float]] = []
        tokens = 0
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state.float()       # (B, T, C)
                mask = batch["attention_mask"].unsqueeze(-1).float()          # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)    # (B, C)
                out.extend(torch.nn.functional.normalize(pooled, dim=-1).cpu().tolist())
                tokens += int(batch["attention_mask"].sum())
        return out, tokens

    def describe(self) -> dict:
        return {"kind": self.kind, "dimensions": int(self.model.config.hidden_size),
                "context_length": self.max_length}


@dataclass
class ServedClassifier:
    name: str
    path: Path
    classifier: Any                        # goldmine.classifier.Classifier
    created: int = field(default_factory=lambda: int(time.time()))
    kind: str = "classify"

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def inputs(self) -> str:
        """"text", or "image" for an image classifier (--arch cnn)."""
        return getattr(self.classifier, "inputs", "text")

    def classify(self, texts: list) -> tuple[list[dict], int]:
        """Texts (or, for an image classifier, images) -> rows of label and probabilities, and
        the tokens read (images: one each)."""
        probs = self.classifier.predict_proba(texts)
        tokens = self.classifier.last_tokens   # counted while encoding, not encoded again
        rows = []
        for i, p in enumerate(probs):
            best = int(p.argmax())
            rows.append({"index": i, "label": self.labels[best],
                         "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}})
        return rows, tokens

    def describe(self) -> dict:
        if self.inputs == "image":
            return {"kind": self.kind, "labels": self.labels, "inputs": "image",
                    "image_size": self.classifier.describe_input()}
        return {"kind": self.kind, "labels": self.labels}


Served = ServedLM | ServedEncoder | ServedClassifier


def parse_spec(spec: str) -> tuple[str, str]:
    """'NAME=PATH' (or a bare PATH, named after its last path part) -> (name, path)."""
    if "=" in spec and not Path(spec).exists():
        name, _, path = spec.partition("=")
    else:
        path = spec
        name = Path(spec.rstrip("/")).name or spec
    name, path = name.strip(), path.strip()
    if not path:
        raise GoldmineError(f"--model {spec!r}: expected NAME=PATH")
    if not NAME_RE.match(name):
        raise GoldmineError(f"--model {spec!r}: model name {name!r} must be 1-128 characters of "
                            "letters, digits and . _ : / -, starting with a letter or digit")
    return name, path


def _hf_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


def _kind_of(ref: str) -> str:
    """'lm', 'classify' or 'embedding' for a model reference (without loading it)."""
    from goldmine import hf
    from goldmine.classifier import META_FILE, resolve_model_dir
    from goldmine.export.llama import CAUSAL_LM_TYPES, is_hf_model_dir

    if ref == hf.MINILM:
        return "embedding"
    path = Path(ref).expanduser()
    if path.is_dir() and is_hf_model_dir(path):
        config = _hf_config(path)
        if config.get("model_type") in CAUSAL_LM_TYPES:
            return "lm"
        if any("SequenceClassification" in a for a in config.get("architectures") or []):
            return "classify"
        return "embedding"
    try:
        gpt = hf.gpt_checkpoint(ref)
    except GoldmineError:  # a run id of another command: resolve_model_dir tells what it is
        gpt = None
    if gpt is not None:
        return "lm"
    model_dir = resolve_model_dir(ref)          # a classify run (or a clear error)
    meta = model_dir / META_FILE
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("task") not in (None, "classify"):
        raise GoldmineError(f"{ref}: not a model the server knows how to serve")
    return "classify"


def load_served(name: str, ref: str, device: torch.device, engine_cfg: EngineConfig,
                dtype: torch.dtype | None = None, on_step=None) -> Served:
    """Load one model for serving; GoldmineError naming `ref` when it is not servable."""
    kind = _kind_of(ref)
    if kind == "lm":
        from goldmine.checkpoint import load_model, refuse_lstm

        model, tokenizer, path = load_model(ref, "best", device)
        refuse_lstm(model, ref, "served", ": the serving engine batches requests through a KV "
                    "cache; LSTM runs are served by `goldmine generate` only")
        if dtype is not None:
            model = model.to(dtype)
        hf_tok = None
        hf_config = path / "tokenizer_config.json"
        if path.is_dir() and (path / "config.json").is_file() and hf_config.is_file() \
                and "format" not in _hf_config(path):
            cfg = json.loads(hf_config.read_text(encoding="utf-8"))
            if cfg.get("chat_template") or (path / "chat_template.jinja").is_file():
                from transformers import AutoTokenizer

                hf_tok = AutoTokenizer.from_pretrained(path)
        engine = Engine(model, engine_cfg, on_step=on_step)
        return ServedLM(name, path, engine, tokenizer, getattr(tokenizer, "chat", None), hf_tok)
    if kind == "classify":
        from goldmine.classifier import Classifier

        clf = Classifier.load(ref, device=str(device))
        return ServedClassifier(name, clf.path, clf)
    from transformers import AutoModel, AutoTokenizer

    from goldmine import hf

    path = hf.resolve_encoder(ref)
    with hf.quiet_transformers():
        model = AutoModel.from_pretrained(path).to(device).eval()
        tok = AutoTokenizer.from_pretrained(path)
    max_len = min(int(getattr(model.config, "max_position_embeddings", 512) or 512), 512)
    return ServedEncoder(name, path, model, tok, max_len, device)
