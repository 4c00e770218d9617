"""Dataclass configs with named presets, YAML files and CLI overrides.

Every command has one dataclass config. A value is resolved in this order, later wins:

    field default  ->  named preset  ->  YAML file (--config)  ->  command-line flags

Fields are declared with `opt(default, "help text")`; the help text is what `--help` prints,
so every option is documented where it is defined.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from goldmine.errors import GoldmineError


def opt(default: Any = None, help: str = "", *, choices=None, positional: bool = False,
        metavar: str | None = None, cli: bool = True):
    """A config field with its help text. Lists and dicts get a fresh copy per instance."""
    meta = {"help": help, "choices": choices, "positional": positional, "metavar": metavar,
            "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _unwrap_optional(tp):
    """Optional[X] / X | None -> (X, True); X -> (X, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise a GoldmineError naming `where`."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise GoldmineError(f"{where}: a value is required")
    origin = typing.get_origin(base)
    try:
        if origin in (list, tuple):
            (item_tp,) = typing.get_args(base)[:1] or (str,)
            if isinstance(value, (str, int, float)):
                value = [value]
            return [coerce(v, item_tp, where) for v in value]
        if base is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, str):
                return int(float(value)) if any(c in value for c in ".eE") else int(value)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if base is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        name = getattr(base, "__name__", str(base))
        raise GoldmineError(f"{where}: expected {name}, got {value!r}") from None
    return value


@dataclass
class Config:
    """Base class: subclasses are dataclasses whose fields are declared with `opt`."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    preset_help: ClassVar[dict[str, str]] = {}

    # -- building --------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str | None = None):
        cfg = cls()
        if name:
            if name not in cls.presets:
                raise GoldmineError(f"unknown preset {name!r}; choose one of: "
                                    f"{', '.join(cls.presets) or '(none)'}")
            cfg = cfg.update(cls.presets[name], where=f"preset {name}")
        return cfg

    @classmethod
    def load(cls, preset: str | None = None, yaml_path: str | Path | None = None,
             overrides: dict[str, Any] | None = None):
        """defaults -> preset -> YAML -> overrides. A YAML file may name its own `preset:`."""
        data: dict[str, Any] = {}
        if yaml_path is not None:
            data = load_yaml(yaml_path)
            preset = preset or data.pop("preset", None)
            data.pop("preset", None)
        cfg = cls.from_preset(preset)
        if data:
            cfg = cfg.update(data, where=str(yaml_path))
        if overrides:
            cfg = cfg.update(overrides, where="command line")
        cfg.validate()
        return cfg

    def update(self, values: dict[str, Any], where: str = "config"):
        """A copy with `values` applied; unknown keys and bad types raise GoldmineError."""
        types_ = field_types(type(self))
        changes = {}
        for key, value in values.items():
            key = key.replace("-", "_")
            if key not in types_:
                hint = difflib.get_close_matches(key, list(types_), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise GoldmineError(f"{where}: unknown option {key!r}{extra}")
            changes[key] = coerce(value, types_[key], f"{where}: {key}")
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Check `choices`; subclasses extend this with cross-field checks."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise GoldmineError(f"{f.name}: {value!r} is not one of {', '.join(map(str, choices))}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def explicit_options(base: Config, overrides: dict[str, Any]) -> dict[str, Any]:
    """The options a caller set: fields of `base` that differ from their defaults, then
    `overrides` (what `--resume` may compare with the saved run's config)."""
    defaults = type(base).__dataclass_fields__
    out = {k: v for k, v in base.to_dict().items() if v != field_default(defaults[k])}
    out.update({k.replace("-", "_"): v for k, v in overrides.items()})
    return out


def resumed(cls, saved: dict[str, Any], explicit: dict[str, Any], overridable: set[str],
            where: str):
    """A resumed run's config: the saved one, with the options given now applied. Options
    outside `overridable` must not change (a GoldmineError names them)."""
    cfg = cls().update(saved, where=where)
    changed = {k: v for k, v in explicit.items() if getattr(cfg, k) != v}
    fixed = sorted(set(changed) - overridable)
    if fixed:
        raise GoldmineError(f"--resume continues the saved run; these options cannot change: "
                            f"{', '.join(fixed)} (start a new run instead)")
    return cfg.update(changed)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise GoldmineError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise GoldmineError(f"{p}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise GoldmineError(f"{p}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GoldmineError(f"{p}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


# ----------------------------------------------------------------------------------------------
# Model presets (dimensions of the GPT in goldmine/model.py). vocab_size comes from the tokenizer.
# intermediate_size None means the Llama rule: 8/3 * n_embd rounded up to a multiple of 64.
# ----------------------------------------------------------------------------------------------
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "test":      dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=64),
    "tiny":      dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "small":     dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, tie_embeddings=True),
    "gpt2-350m": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, tie_embeddings=True),
    "llama-1b":  dict(n_layer=16, n_head=32, n_kv_head=8, n_embd=2048, intermediate_size=8192,
                      block_size=2048, rope_theta=500000.0, tie_embeddings=True),
    "llama-7b":  dict(n_layer=32, n_head=32, n_embd=4096, intermediate_size=11008,
                      block_size=4096),
}

# Encoder presets (goldmine/encoder.py, `pretrain --objective mlm`): BERT's shapes, head width 64;
# intermediate_size None means 4 * n_embd. block_size is max_position_embeddings.
ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "test":      dict(n_layer=2, n_head=2, n_embd=32, block_size=64),
    "tiny":      dict(n_layer=2, n_head=2, n_embd=128, block_size=128),    # BERT-tiny
    "mini":      dict(n_layer=4, n_head=4, n_embd=256, block_size=128),    # BERT-mini
    "small":     dict(n_layer=6, n_head=6, n_embd=384, block_size=128),    # MiniLM-L6's width
    "bert-base": dict(n_layer=12, n_head=12, n_embd=768, block_size=512),
}

DEVICES = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


# ----------------------------------------------------------------------------------------------
# Command configs
# ----------------------------------------------------------------------------------------------
@dataclass
class SampleDataConfig(Config):
    """goldmine data sample: write the synthetic online-shop corpus."""

    out: str = opt("sample-data", "output directory")
    seed: int = opt(0, "random seed; the same seed writes byte-identical files")
    scale: float = opt(1.0, "multiplies every row count (1.0 is about 1.3 MB of text)")

    presets: ClassVar = {"tiny": {"scale": 0.05}, "default": {}}
    preset_help: ClassVar = {"tiny": "5% of the rows, for tests", "default": "the full sample"}

    def validate(self):
        super().validate()
        if self.scale <= 0:
            raise GoldmineError(f"scale: must be > 0, got {self.scale}")


@dataclass
class PrepareConfig(Config):
    """goldmine data prepare: clean, deduplicate, scrub PII, balance, augment and split raw
    files into a dataset that tokenizer, pretraining, fine-tuning and evaluation read directly.
    Every input row ends up kept, deduplicated or rejected with a reason."""

    inputs: list[str] = opt([], "files or folders: .txt .md .jsonl .json .csv .tsv .parquet",
                            positional=True, metavar="INPUT")
    kind: str = opt("text", "text: documents for pretraining; classify: (text, label) rows; "
                    "chat: conversations (messages lists or prompt/response columns)",
                    choices=["text", "classify", "chat"])
    out: str | None = opt(None, "output directory (default: the run directory under GOLDMINE_HOME)")
    format: str = opt("jsonl", "file format of the splits", choices=["jsonl", "parquet"])
    # reading
    text_column: str = opt("text", "column/field holding the text (JSON lists: its position, e.g. 0)")
    label_column: str = opt("label", "classify: column/field holding the label")
    label_from_folder: bool = opt(False, "classify: the label is the name of the folder each "
                                  "file is in (one .txt file per example, one folder per label)")
    messages_column: str = opt("messages", "chat: field holding an OpenAI-style list of "
                               "{role, content} messages (ShareGPT {from, value} also read)")
    prompt_column: str | None = opt(None, "chat: column with the user turn when there is no "
                                    "messages field (default: the first of prompt, instruction, "
                                    "question, input, query)")
    response_column: str | None = opt(None, "chat: column with the assistant turn (default: the "
                                      "first of response, output, answer, completion)")
    system_prompt: str | None = opt(None, "chat: system message put first in every conversation "
                                    "that has none")
    split_column: str | None = opt(None, "keep existing splits: column with train/val/test "
                                   "(also training, validation, dev, test); no new split is drawn")
    unit: str = opt("document", "what one row of a .txt/.md file is: the whole file, a "
                    "paragraph (blank-line separated) or a line",
                    choices=["document", "paragraph", "line"])
    encoding: str = opt("auto", "input encoding: auto (UTF-8, BOMs, GB18030/GBK, then cp1252 and "
                        "latin-1 as the stated fallback) or a codec name such as gb18030")
    # cleaning and filters
    normalize: bool = opt(True, "Unicode NFKC (full-width letters and digits to ASCII, ligatures "
                          "split); control characters and whitespace are tidied either way")
    strip_html: bool = opt(True, "remove HTML tags, scripts, styles and comments; decode entities")
    pii: bool = opt(True, "replace e-mails, phones, Chinese ID numbers, card numbers, IP addresses "
                    "and URL credentials with typed placeholders such as <EMAIL>")
    min_chars: int = opt(1, "reject rows whose cleaned text is shorter than this")
    max_chars: int | None = opt(None, "reject rows whose cleaned text is longer than this")
    tokenizer: str | None = opt(None, "tokenizer for --min-tokens/--max-tokens (tokenizer.json, "
                                "its directory or a run id)")
    min_tokens: int | None = opt(None, "reject rows with fewer tokens (needs --tokenizer)")
    max_tokens: int | None = opt(None, "reject rows with more tokens (needs --tokenizer)")
    lowercase_labels: bool = opt(True, "classify: lower-case labels (whitespace is always tidied)")
    label_map: str | None = opt(None, "classify: YAML/JSON file mapping raw labels to names, "
                                "e.g. {0: negative, 1: positive}; a label mapped to null is "
                                "rejected")
    labels: list[str] = opt([], "classify: the allowed labels (after mapping); rows with others are "
                            "rejected")
    # deduplication
    dedup: str = opt("near", "none; exact (normalised text hash); near (exact, then MinHash LSH)",
                     choices=["none", "exact", "near"])
    near_threshold: float = opt(0.8, "near duplicates: estimated Jaccard similarity of shingle sets "
                                "at or above which a row is dropped")
    shingle_size: int = opt(3, "near duplicates: shingle length in words (English) or "
                            "characters (Chinese)")
    num_perm: int = opt(128, "near duplicates: MinHash permutations")
    # classes and splits
    balance: str = opt("none", "classify: balance labels in train by oversampling copies or "
                       "undersampling (seeded); val and test are never balanced",
                       choices=["none", "over", "under"])
    augment: int = opt(0, "classify: add N edited versions of each training row and oversampled "
                       "copy (random deletion, swap or insertion of words/characters); marked "
                       "origin=augmented, train only")
    val_fraction: float | None = opt(None, "share of rows for validation (default: 0.1 for "
                                     "classify/chat, 0 for text)")
    test_fraction: float | None = opt(None, "share of rows for test (default: 0.1 for "
                                      "classify/chat, 0 for text)")
    folds: int = opt(0, "write stratified K-fold indices over train (a `fold` field) for "
                     "cross-validation; 0: off (with folds, --val-fraction is 0 unless given)")
    seed: int = opt(0, "random seed for splits, folds, balancing and augmentation")
    # run
    workers: int = opt(0, "processes for cleaning and hashing; 0: one per CPU core when the "
                       "inputs exceed 16 MB, else 1 (the result is the same either way)")
    max_reject_ratio: float = opt(0.5, "fail when more than this share of the rows read is "
                                  "rejected (1 turns the check off)")

    presets: ClassVar = {
        "text": {"kind": "text"},
        "classify": {"kind": "classify"},
        "chat": {"kind": "chat"},
        "fast": {"dedup": "exact"},
    }
    preset_help: ClassVar = {
        "text": "a pretraining corpus (default)",
        "classify": "(text, label) rows, stratified 80/10/10 split",
        "chat": "conversations, 80/10/10 split",
        "fast": "exact deduplication only (about twice as fast)",
    }

    def fractions(self) -> tuple[float, float]:
        """(val, test) with the per-kind defaults filled in."""
        default = 0.0 if self.kind == "text" else 0.1
        val = self.val_fraction if self.val_fraction is not None else (
            0.0 if self.folds else default)
        test = self.test_fraction if self.test_fraction is not None else default
        return val, test

    def validate(self):
        super().validate()
        val, test = self.fractions()
        if val < 0 or test < 0 or val + test >= 1:
            raise GoldmineError(f"val_fraction + test_fraction must be in [0, 1), got {val} + {test}")
        if not 0.0 < self.near_threshold <= 1.0:
            raise GoldmineError(f"near_threshold: must be in (0, 1], got {self.near_threshold}")
        if self.shingle_size < 1 or self.num_perm < 16:
            raise GoldmineError("shingle_size must be >= 1 and num_perm >= 16")
        if self.folds == 1 or self.folds < 0:
            raise GoldmineError(f"folds: must be 0 (off) or >= 2, got {self.folds}")
        if not 0.0 < self.max_reject_ratio <= 1.0:
            raise GoldmineError(f"max_reject_ratio: must be in (0, 1], got {self.max_reject_ratio}")
        if self.augment < 0 or self.workers < 0 or self.min_chars < 0:
            raise GoldmineError("augment, workers and min_chars must be >= 0")
        if (self.min_tokens is not None or self.max_tokens is not None) and not self.tokenizer:
            raise GoldmineError("--min-tokens/--max-tokens need --tokenizer")
        if self.kind != "classify":
            for name, off in (("balance", "none"), ("augment", 0), ("label_map", None),
                              ("labels", []), ("label_from_folder", False)):
                if getattr(self, name) != off:
                    raise GoldmineError(f"{name}: only for --kind classify")


@dataclass
class TokenizerConfig(Config):
    """goldmine tokenizer train: byte-level BPE (or characters) trained on your text."""

    inputs: list[str] = opt([], "text files or folders (.txt, .jsonl with a text field)",
                            positional=True, metavar="INPUT")
    out: str | None = opt(None, "output directory for tokenizer.json "
                          "(default: the run directory under GOLDMINE_HOME)")
    vocab_size: int = opt(8192, "vocabulary size, special tokens and the 256 byte symbols included "
                          "(char mode: an upper bound; the result has one token per character seen)")
    char: bool = opt(False, "character-level vocabulary (one token per character seen) instead of BPE")
    byte_fallback: bool = opt(True, "char mode: encode unseen characters as UTF-8 byte tokens, "
                              "so encode->decode stays lossless; off: they become <|unk|> "
                              "(id 7; decoding is then lossy)")
    min_frequency: int = opt(2, "BPE: a pair must occur this often to be merged")
    text_field: str = opt("text", "field holding the text in .jsonl inputs")
    max_bytes: int | None = opt(None, "train on at most this many bytes of input (None: all)")

    presets: ClassVar = {
        "bpe-8k": {"vocab_size": 8192},
        "bpe-32k": {"vocab_size": 32000},
        "bpe-4k": {"vocab_size": 4096},
        "char": {"char": True},
    }
    preset_help: ClassVar = {
        "bpe-8k": "byte-level BPE, 8,192 tokens (default)",
        "bpe-32k": "byte-level BPE, 32,000 tokens (Llama-2 sized)",
        "bpe-4k": "byte-level BPE, 4,096 tokens (small corpora)",
        "char": "one token per character, bytes for the rest",
    }

    def validate(self):
        super().validate()
        if self.min_frequency < 1:
            raise GoldmineError(f"min_frequency: must be >= 1, got {self.min_frequency}")


@dataclass
class TokenizeConfig(Config):
    """goldmine data tokenize: stream a corpus through a tokenizer into train/val token shards."""

    inputs: list[str] = opt([], "text files or folders (.txt, .jsonl with a text field)",
                            positional=True, metavar="INPUT")
    tokenizer: str | None = opt(None, "tokenizer.json, a directory holding one, or a tokenizer run id")
    out: str | None = opt(None, "output directory (default: the run directory under GOLDMINE_HOME)")
    val_fraction: float = opt(0.1, "share of the corpus that goes to the validation split")
    split: str = opt("tail", "tail: the last val_fraction of the corpus in reading order "
                     "(nanoGPT's convention); random: each document goes to val with "
                     "probability val_fraction (seeded)", choices=["tail", "random"])
    seed: int = opt(0, "seed for --split random")
    text_field: str = opt("text", "field holding the text in .jsonl inputs")
    bos: bool = opt(True, "put the beginning-of-sequence token before every document (generation "
                    "starts prompts with it too)")
    eos: bool = opt(True, "append the end-of-sequence token after every document")
    shard_tokens: int = opt(100_000_000, "start a new shard file after this many tokens")

    presets: ClassVar = {"default": {}, "random-split": {"split": "random"}}
    preset_help: ClassVar = {"default": "tail split, 10% validation",
                             "random-split": "documents assigned to val at random"}

    def validate(self):
        super().validate()
        if not 0.0 < self.val_fraction < 1.0:
            raise GoldmineError(f"val_fraction: must be between 0 and 1, got {self.val_fraction}")
        if self.shard_tokens < 1024:
            raise GoldmineError(f"shard_tokens: must be >= 1024, got {self.shard_tokens}")


@dataclass
class PretrainConfig(Config):
    """goldmine pretrain: train a Llama-style GPT (or an LSTM baseline) from scratch on token
    shards or text; or, with --objective mlm, a BERT-style encoder by masked-language modelling
    on text."""

    # data
    data: str | None = opt(None, "token shards directory (from `goldmine data tokenize`), or a "
                           ".txt/.jsonl file or folder to tokenize first")
    tokenizer: str | None = opt(None, "tokenizer for raw-text --data (tokenizer.json, its "
                                "directory or a run id); shards carry their own. --objective "
                                "mlm: optional, a BERT WordPiece tokenizer with [MASK] (minilm, "
                                "a Hugging Face BERT directory or an mlm run); without one, a "
                                "WordPiece vocabulary is trained on --data")
    out: str | None = opt(None, "run directory (default: a new one under GOLDMINE_HOME)")
    # model
    objective: str = opt("clm", "clm: next-token prediction (the GPT, or the LSTM of --arch "
                         "lstm); mlm: masked-language modelling of a BERT-style bidirectional "
                         "encoder (goldmine/encoder.py) on text, saved as a Hugging Face BERT "
                         "directory (RUN/hf) that `finetune classify --model RUN` fine-tunes",
                         choices=["clm", "mlm"])
    arch: str = opt("gpt", "gpt (the Llama-style transformer) or lstm (a recurrent baseline, "
                    "trained the same way); for an LSTM, --model and its overrides describe the "
                    "GPT whose parameter count it matches, and --n-embd, --block-size, "
                    "--dropout and --tie-embeddings apply to it too", choices=["gpt", "lstm"])
    model: str = opt("tiny", "model preset: " + ", ".join(MODEL_PRESETS) + "; with --objective "
                     "mlm, an encoder: " + ", ".join(ENCODER_PRESETS),
                     choices=list(dict.fromkeys([*MODEL_PRESETS, *ENCODER_PRESETS])))
    n_layer: int | None = opt(None, "transformer blocks (default: from --model)")
    n_head: int | None = opt(None, "attention heads (default: from --model)")
    n_kv_head: int | None = opt(None, "key/value heads for grouped-query attention "
                                "(default: from --model, else n_head)")
    n_embd: int | None = opt(None, "model width (default: from --model)")
    intermediate_size: int | None = opt(None, "SwiGLU hidden width (default: from --model, else "
                                        "8/3 n_embd rounded up to 64; an encoder's "
                                        "feed-forward: 4 n_embd)")
    block_size: int | None = opt(None, "context length in tokens (default: from --model)")
    rope_theta: float | None = opt(None, "rotary embedding base (default: from --model, else 10000)")
    tie_embeddings: bool | None = opt(None, "share input embedding and output head weights (default: from --model)")
    dropout: float = opt(0.0, "dropout on attention and residual paths (0 for pretraining)")
    lstm_layers: int | None = opt(None, "with --arch lstm: stacked LSTM layers (default 2)")
    lstm_hidden: int | None = opt(None, "with --arch lstm: LSTM hidden width (default: the width "
                                  "that gives the LSTM as many parameters as the GPT of the "
                                  "other model options)")
    mask_prob: float | None = opt(None, "with --objective mlm: share of each sequence's tokens "
                                  "to predict (default 0.15); of those, 80% are replaced by "
                                  "[MASK], 10% by a random token and 10% kept")
    whole_word: bool | None = opt(None, "with --objective mlm: mask whole words, a token with its "
                                  "## continuations, and every Chinese character on its own "
                                  "(default: on); off: single tokens")
    vocab_size: int | None = opt(None, "with --objective mlm and no --tokenizer: size of the "
                                 "WordPiece vocabulary trained on --data (default 8192)")
    # optimisation
    batch_size: int = opt(16, "sequences per micro-batch per process")
    grad_accum: int = opt(1, "micro-batches accumulated per optimizer step")
    max_steps: int = opt(1000, "optimizer steps; also the length of the LR schedule")
    max_tokens: int | None = opt(None, "stop after this many training tokens (sets max_steps)")
    max_time: str | None = opt(None, "stop after this wall time, e.g. 90s, 2m, 1.5h; saves a "
                               "checkpoint first (the LR schedule still follows max_steps)")
    learning_rate: float = opt(1e-3, "peak learning rate")
    min_lr: float | None = opt(None, "final learning rate of the cosine decay (default: lr/10)")
    warmup_steps: int = opt(100, "linear warmup steps")
    weight_decay: float = opt(0.1, "AdamW weight decay (not applied to norms)")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.95, "AdamW beta2")
    grad_clip: float = opt(1.0, "clip the global gradient norm to this (0: off)")
    # evaluation, checkpoints, logging
    eval_every: int = opt(250, "evaluate on the validation split every N steps (0: only at the end)")
    eval_batches: int = opt(20, "validation batches per evaluation")
    ckpt_every: int = opt(500, "save a checkpoint every N steps (and always at the end)")
    keep_last: int = opt(2, "keep this many recent checkpoints (the best one is kept apart)")
    log_every: int = opt(10, "record the training loss every N steps")
    seed: int = opt(1337, "random seed (weights, batches, dropout)")
    # hardware
    device: str = opt("auto", "device: " + DEVICES)
    precision: str = opt("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16",
                         choices=["auto", "fp32", "bf16"])
    compile: bool = opt(False, "torch.compile the model (slow start, faster steps)")
    resume: str | None = opt(None, "continue from a checkpoint: 'latest' (the newest unfinished "
                             "pretrain run), a run id, a run directory or a checkpoint directory")

    presets: ClassVar = {
        "tiny": {},
        "test": {"model": "test", "batch_size": 4, "max_steps": 20, "warmup_steps": 2,
                 "eval_every": 10, "eval_batches": 2, "ckpt_every": 10, "log_every": 1},
        "shakespeare-char": {"model": "tiny", "n_layer": 4, "n_head": 4, "n_embd": 128,
                             "block_size": 64, "batch_size": 12, "max_steps": 2000,
                             "learning_rate": 2e-3, "min_lr": 1e-4, "warmup_steps": 100,
                             "beta2": 0.99, "weight_decay": 0.1, "eval_every": 500,
                             "ckpt_every": 2000},
        "small": {"model": "small", "batch_size": 16, "max_steps": 5000, "learning_rate": 1e-3,
                  "warmup_steps": 200},
        "gpt2-124m": {"model": "gpt2-124m", "batch_size": 16, "grad_accum": 32,
                      "max_steps": 19000, "learning_rate": 6e-4, "min_lr": 6e-5,
                      "warmup_steps": 700, "eval_every": 500, "ckpt_every": 1000},
    }
    # the same budget for the LSTM, at the learning rate that suits it (val loss 1.69 at 1e-2,
    # 1.74 at 5e-3; the GPT's 2e-3 leaves it far behind early on)
    presets["shakespeare-char-lstm"] = {**presets["shakespeare-char"], "arch": "lstm",
                                        "learning_rate": 1e-2}
    # BERT's recipe (AdamW, weight decay 0.01, dropout 0.1, sequences of 128) at a small scale
    presets["mlm"] = {"objective": "mlm", "model": "tiny", "batch_size": 32, "max_steps": 2000,
                      "learning_rate": 1e-3, "warmup_steps": 100, "weight_decay": 0.01,
                      "beta2": 0.98, "dropout": 0.1, "eval_every": 250, "ckpt_every": 500}
    preset_help: ClassVar = {
        "tiny": "4 layers, 128 wide: a minute on a laptop CPU (default)",
        "test": "2 layers, 32 wide, 20 steps: for tests",
        "shakespeare-char": "nanoGPT's CPU budget: 4L/4H/128d, context 64, batch 12, 2000 steps",
        "small": "6 layers, 384 wide, context 256",
        "gpt2-124m": "GPT-2 small scale, 0.5M tokens per step: for GPUs",
        "shakespeare-char-lstm": "shakespeare-char's budget for a 2-layer LSTM (hidden 241) with "
                                 "the parameter count of its 4L/4H/128d GPT (0.87M at 65 "
                                 "characters), learning rate 1e-2",
        "mlm": "a BERT-tiny encoder by masked-language modelling (--objective mlm): 2L/2H/128d, "
               "sequences of 128, WordPiece vocabulary of 8192, batch 32, 2000 steps, lr 1e-3, "
               "dropout 0.1",
    }

    def validate(self):
        super().validate()
        for name in ("batch_size", "grad_accum", "max_steps", "eval_batches", "keep_last",
                     "log_every"):
            if getattr(self, name) < 1:
                raise GoldmineError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "weight_decay", "grad_clip", "dropout"):
            if getattr(self, name) < 0:
                raise GoldmineError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise GoldmineError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.max_time is not None:
            parse_duration(self.max_time)
        self._validate_objective()
        lstm_options = ("lstm_layers", "lstm_hidden")
        if self.arch == "lstm":
            if self.rope_theta is not None:
                raise GoldmineError("rope_theta: an LSTM has no rotary embeddings (--arch lstm)")
            for name in lstm_options:
                if getattr(self, name) is not None and getattr(self, name) < 1:
                    raise GoldmineError(f"{name}: must be >= 1, got {getattr(self, name)}")
        else:
            for name in lstm_options:
                if getattr(self, name) is not None:
                    raise GoldmineError(f"{name}: only with --arch lstm")

    def _validate_objective(self):
        mlm_options = ("mask_prob", "whole_word", "vocab_size")
        if self.objective == "clm":
            for name in mlm_options:
                if getattr(self, name) is not None:
                    raise GoldmineError(f"{name}: only with --objective mlm")
            if self.model not in MODEL_PRESETS:
                raise GoldmineError(f"model: {self.model!r} is an encoder preset (--objective "
                                    f"mlm); GPT presets: {', '.join(MODEL_PRESETS)}")
            return
        if self.arch != "gpt":
            raise GoldmineError(f"arch: --objective mlm trains a BERT-style encoder; --arch "
                                f"{self.arch} is a next-token language model (--objective clm)")
        for name in ("n_kv_head", "rope_theta", "tie_embeddings"):
            if getattr(self, name) is not None:
                raise GoldmineError(f"{name}: only for the GPT (--objective clm); the encoder "
                                    "has full multi-head attention, learned positions and a "
                                    "decoder tied to its word embeddings")
        if self.model not in ENCODER_PRESETS:
            raise GoldmineError(f"model: {self.model!r} is a GPT preset; with --objective mlm "
                                f"choose an encoder: {', '.join(ENCODER_PRESETS)}")
        if self.mask_prob is not None and not 0.0 < self.mask_prob < 1.0:
            raise GoldmineError(f"mask_prob: must be between 0 and 1, got {self.mask_prob}")
        if self.vocab_size is not None:
            if self.tokenizer is not None:
                raise GoldmineError("vocab_size: sizes the WordPiece vocabulary trained when no "
                                    "--tokenizer is given; the tokenizer given has its own")
            if self.vocab_size < 16:
                raise GoldmineError(f"vocab_size: must be >= 16, got {self.vocab_size}")


@dataclass
class GenerateConfig(Config):
    """goldmine generate: sample text from a trained model."""

    model: str | None = opt(None, "a run id, run directory or checkpoint directory")
    prompt: str = opt("", "text to continue ('-' reads standard input)")
    max_new_tokens: int = opt(200, "tokens to generate at most")
    temperature: float = opt(0.8, "sampling temperature; 0 means greedy")
    top_k: int | None = opt(50, "sample among the k most likely tokens (None: all)")
    top_p: float | None = opt(0.95, "nucleus sampling: smallest set with this probability mass")
    repetition_penalty: float = opt(1.0, "above 1 discourages tokens already in the text")
    stop: list[str] = opt([], "stop when any of these strings is generated (repeatable)")
    num_samples: int = opt(1, "independent samples to draw")
    seed: int | None = opt(None, "random seed for reproducible sampling")
    device: str = opt("auto", "device: " + DEVICES)
    checkpoint: str = opt("best", "which checkpoint of a run: best, last or a step number")
    chat: bool | None = opt(None, "send the prompt as a user message through the model's chat "
                            "template and print the answer (default: when the model has one, "
                            "i.e. after `finetune sft`)")
    system: str | None = opt(None, "with --chat: a system message before the prompt")

    presets: ClassVar = {
        "balanced": {},
        "greedy": {"temperature": 0.0, "top_k": None, "top_p": None},
        "creative": {"temperature": 1.0, "top_k": None, "top_p": 0.95},
        "precise": {"temperature": 0.3, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.1},
    }
    preset_help: ClassVar = {
        "balanced": "temperature 0.8, top-k 50, top-p 0.95 (default)",
        "greedy": "always the most likely token: deterministic",
        "creative": "temperature 1.0, top-p 0.95",
        "precise": "temperature 0.3 with a mild repetition penalty",
    }

    def validate(self):
        super().validate()
        if self.temperature < 0:
            raise GoldmineError(f"temperature: must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise GoldmineError(f"top_k: must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise GoldmineError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise GoldmineError(f"repetition_penalty: must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1 or self.num_samples < 1:
            raise GoldmineError("max_new_tokens and num_samples must be >= 1")


@dataclass
class FinetuneClassifyConfig(Config):
    """goldmine finetune classify: fine-tune a BERT-family encoder or a goldmine GPT (or LoRA
    adapters on either) for text classification; the result loads with transformers'
    AutoModelForSequenceClassification. Or, with --arch logreg, train the linear baseline
    (goldmine/baselines/logreg.py); with --arch cnn, a small convolutional network on images
    (goldmine/baselines/cnn.py)."""

    arch: str = opt("transformer", "what to train: transformer (fine-tune --model) or logreg (a "
                    "logistic regression on hashed word and character n-grams, from scratch, "
                    "in seconds on a CPU: the baseline to beat), or cnn (a small convolutional "
                    "network for images, from scratch)",
                    choices=["transformer", "logreg", "cnn"])
    data: str | None = opt(None, "a prepared classify dataset (`goldmine data prepare --kind "
                           "classify`) or a .csv/.tsv/.jsonl file with text and label columns; "
                           "cnn: an image folder (one sub-folder per label), a folder of "
                           "MNIST-format IDX files, or digits (scikit-learn's 8x8 digits, the "
                           "default)")
    model: str = opt("minilm", "backbone: minilm (the embedded all-MiniLM-L6-v2), a local "
                     "Hugging Face encoder directory (BERT, MiniLM, RoBERTa, ...), or a "
                     "goldmine GPT run (a classification head on its last token), or a `pretrain "
                     "--objective mlm` encoder run")
    out: str | None = opt(None, "output directory (default: the run directory under GOLDMINE_HOME)")
    text_column: str = opt("text", "raw files: column holding the text")
    label_column: str = opt("label", "raw files: column holding the label")
    val_fraction: float = opt(0.1, "when the data has no validation split, hold out this share "
                              "of train (stratified, seeded) and say so")
    fold: int | None = opt(None, "cross-validation: validate on the train rows whose fold index "
                           "(`goldmine data prepare --folds K`) is this one, train on the others")
    max_length: int = opt(128, "truncate longer texts to this many tokens (counted and reported)")
    # optimisation
    epochs: float | None = opt(None, "passes over the training set, fractions allowed "
                               "(default: transformer 3, logreg 10, cnn 30)")
    max_steps: int | None = opt(None, "stop after this many optimizer steps (overrides epochs)")
    batch_size: int | None = opt(None, "examples per optimizer step (default: transformer 32, "
                                 "logreg and cnn 64)")
    learning_rate: float | None = opt(None, "peak learning rate (default: transformer 5e-5 (with "
                                      "LoRA use ~1e-3), logreg 4, cnn 3e-3)")
    head_lr_scale: float = opt(20.0, "full fine-tuning: the new head (classifier and pooler) "
                               "learns at this multiple of --learning-rate (it starts from "
                               "random weights; 1: one rate for all)")
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    warmup_ratio: float | None = opt(None, "share of the steps with a linear warmup (default: "
                                     "transformer 0.06, logreg and cnn 0)")
    schedule: str | None = opt(None, "decay after warmup (default: transformer linear, logreg "
                               "and cnn cosine)", choices=["linear", "cosine", "constant"])
    grad_clip: float = opt(1.0, "clip the global gradient norm (0: off)")
    class_weights: str = opt("none", "none, or auto: weight the loss by inverse label frequency "
                             "(for skewed labels)", choices=["none", "auto"])
    group_by_length: bool = opt(True, "batch texts of similar length together (less padding)")
    # LoRA
    lora: bool = opt(False, "train LoRA adapters (peft) and the classification head only")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA scaling alpha")
    lora_dropout: float = opt(0.1, "LoRA dropout")
    # logreg (--arch logreg)
    word_ngrams: str = opt("1-2", "logreg: word n-gram lengths, MIN-MAX (0: none)",
                           metavar="MIN-MAX")
    char_ngrams: str = opt("2-4", "logreg: character n-gram lengths, MIN-MAX (0: none); they "
                           "make Chinese work without a word segmenter", metavar="MIN-MAX")
    char_scope: str = opt("words", "logreg: character n-grams of each word (words) or of the "
                          "whole lowercased text (text)", choices=["words", "text"])
    hash_buckets: int = opt(2**18, "logreg: n-grams are hashed into this many feature columns")
    tfidf: bool = opt(True, "logreg: weight n-grams by inverse document frequency (fit on "
                      "train); off: sublinear term frequency only")
    l2: float = opt(1e-5, "logreg: L2 penalty, (l2 / 2) * ||W||^2 added to the mean log-loss "
                    "(not on the bias); scikit-learn's C = 1 / (n * l2)")
    momentum: float = opt(0.9, "logreg: SGD momentum (0: plain SGD)")
    # cnn (--arch cnn)
    cnn_size: str = opt("medium", "cnn: network size: small (conv 16-32, dense 64), medium "
                        "(conv 32-64, dense 128) or large (conv 32-64-128, dense 256)",
                        choices=["small", "medium", "large"])
    image_size: str | None = opt(None, "cnn: resize every image to SIZE (square) or WIDTHxHEIGHT "
                                 "pixels (default: the most common size of the training "
                                 "images; others are resized, and counted)", metavar="SIZE")
    augment: str = opt("shift", "cnn: training-time augmentation: none, shift (move each image "
                       "by up to 10% of its side, seeded per step) or shift-flip (also mirror "
                       "half of them left-right: photos, not digits)",
                       choices=["none", "shift", "shift-flip"])
    # evaluation, early stopping, checkpoints
    eval_every: int | None = opt(None, "evaluate every N steps (default: once per epoch)")
    metric: str | None = opt(None, "validation metric for best-checkpoint selection and early "
                             "stopping (default: transformer f1_macro, logreg and cnn loss)",
                             choices=["f1_macro", "accuracy", "loss"])
    patience: int | None = opt(None, "stop after this many evaluations without improvement (0: "
                               "never; default: transformer 3, logreg and cnn 0)")
    seed: int = opt(42, "random seed (head initialisation, shuffling, dropout)")
    device: str = opt("auto", "device: " + DEVICES)
    resume: str | None = opt(None, "continue an interrupted run: its run id or directory")

    # what --arch logreg / cnn use where an option is left at its (transformer) default
    arch_defaults: ClassVar = {
        "transformer": {"learning_rate": 5e-5, "epochs": 3.0, "batch_size": 32,
                        "schedule": "linear", "warmup_ratio": 0.06, "metric": "f1_macro",
                        "patience": 3},
        "logreg": {"learning_rate": 4.0, "epochs": 10.0, "batch_size": 64, "schedule": "cosine",
                   "warmup_ratio": 0.0, "metric": "loss", "patience": 0},
        "cnn": {"learning_rate": 3e-3, "epochs": 30.0, "batch_size": 64, "schedule": "cosine",
                "warmup_ratio": 0.0, "metric": "loss", "patience": 0},
    }
    # options that mean something for some archs only; setting one for another is an error
    arch_options: ClassVar = {
        "transformer": ("model", "max_length", "head_lr_scale", "weight_decay", "grad_clip",
                        "group_by_length", "lora", "lora_r", "lora_alpha", "lora_dropout"),
        "logreg": ("word_ngrams", "char_ngrams", "char_scope", "hash_buckets", "tfidf", "l2",
                   "momentum"),
        "cnn": ("cnn_size", "image_size", "augment", "weight_decay", "grad_clip"),
    }
    presets: ClassVar = {
        "default": {},
        "lora": {"lora": True, "learning_rate": 1e-3},
        "test": {"epochs": 1.0, "batch_size": 8, "max_length": 32, "patience": 0},
        "logreg": {"arch": "logreg"},
        "cnn": {"arch": "cnn"},
    }
    preset_help: ClassVar = {
        "default": "full fine-tuning, 3 epochs, lr 5e-5",
        "lora": "LoRA adapters (r=8) and the head, lr 1e-3",
        "test": "one short epoch: for tests",
        "logreg": "the linear baseline (--arch logreg): SGD with momentum 0.9, lr 4 with cosine "
                  "decay, 10 epochs of 64, the best epoch by val log-loss",
        "cnn": "the image baseline (--arch cnn): conv 32-64 and dense 128, AdamW lr 3e-3 with "
               "cosine decay, 30 epochs of 64 with shift augmentation, the best epoch by val "
               "log-loss",
    }

    def with_arch_defaults(self) -> FinetuneClassifyConfig:
        """A copy where the options left unset (None) take the chosen arch's defaults (logreg
        learns at 4, a transformer at 5e-5); a value given, whatever it is, stays."""
        unset = {k: v for k, v in self.arch_defaults[self.arch].items()
                 if getattr(self, k) is None}
        return self.update(unset)

    def ngram_range(self, name: str) -> tuple[int, int]:
        """word_ngrams / char_ngrams, "1-2" or "3" or "0", as (min, max); (0, 0): none."""
        text = str(getattr(self, name)).strip()
        lo, sep, hi = text.partition("-")
        try:
            lo, hi = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise GoldmineError(f"{name}: expected MIN-MAX n-gram lengths such as 1-2, or 0 for "
                                f"none; got {text!r}") from None
        if (lo, hi) != (0, 0) and not 1 <= lo <= hi <= 10:
            raise GoldmineError(f"{name}: lengths must satisfy 1 <= MIN <= MAX <= 10 (or 0 for "
                                f"none); got {text!r}")
        return lo, hi

    def image_hw(self) -> tuple[int, int] | None:
        """--image-size "28" or "32x24" (width x height) as (height, width); None: not given."""
        if self.image_size is None:
            return None
        text = str(self.image_size).lower().strip()
        w, sep, h = text.partition("x")
        try:
            w, h = int(w), int(h) if sep else int(w)
        except ValueError:
            raise GoldmineError(f"image_size: expected SIZE or WIDTHxHEIGHT in pixels, such as "
                                f"28 or 32x24; got {self.image_size!r}") from None
        if not (1 <= w <= 4096 and 1 <= h <= 4096):
            raise GoldmineError(f"image_size: sides must be between 1 and 4096 pixels; got "
                                f"{self.image_size!r}")
        return h, w

    def validate(self):
        super().validate()
        if not 0.0 < self.val_fraction < 1.0:
            raise GoldmineError(f"val_fraction: must be between 0 and 1, got {self.val_fraction}")
        for name in ("batch_size", "max_length", "lora_r"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise GoldmineError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "learning_rate"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise GoldmineError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.warmup_ratio is not None and not 0.0 <= self.warmup_ratio < 1.0:
            raise GoldmineError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.patience is not None and self.patience < 0:
            raise GoldmineError(f"patience: must be >= 0, got {self.patience}")
        if self.head_lr_scale <= 0:
            raise GoldmineError(f"head_lr_scale: must be > 0, got {self.head_lr_scale}")
        if self.fold is not None and self.fold < 0:
            raise GoldmineError(f"fold: must be >= 0, got {self.fold}")
        defaults = type(self).__dataclass_fields__
        owners: dict[str, list[str]] = {}  # option -> the archs it applies to
        for arch, names in self.arch_options.items():
            for name in names:
                owners.setdefault(name, []).append(arch)
        for name, archs in owners.items():
            if self.arch not in archs and getattr(self, name) != field_default(defaults[name]):
                raise GoldmineError(f"{name}: applies to --arch {' and '.join(archs)} only, "
                                    f"and this run is --arch {self.arch}; drop it")
        if self.arch == "logreg":
            if self.ngram_range("word_ngrams") == self.ngram_range("char_ngrams") == (0, 0):
                raise GoldmineError("word_ngrams, char_ngrams: both 0 leaves a logreg model no "
                                    "features")
            if not 1 <= self.hash_buckets <= 2**26:
                raise GoldmineError(f"hash_buckets: must be between 1 and 2^26, got "
                                    f"{self.hash_buckets}")
            if self.l2 < 0 or not 0.0 <= self.momentum < 1.0:
                raise GoldmineError("l2 must be >= 0 and momentum in [0, 1)")
        if self.arch == "cnn":
            self.image_hw()  # a bad --image-size fails here


@dataclass
class FinetuneSFTConfig(Config):
    """goldmine finetune sft: teach a GPT to answer in conversations (chat / instruction tuning),
    with the loss on the assistant's tokens only; full fine-tuning or LoRA adapters."""

    data: str | None = opt(None, "a prepared chat dataset (`goldmine data prepare --kind chat`) "
                           "or a .jsonl file with a `messages` list per line")
    model: str | None = opt(None, "the model to tune: a goldmine GPT run (id or directory) or a "
                            "local Hugging Face causal-LM directory (Llama, Mistral, Qwen2)")
    out: str | None = opt(None, "output directory (default: the run directory under GOLDMINE_HOME)")
    val_fraction: float = opt(0.1, "when the data has no validation split, hold out this share "
                              "of train (seeded) and say so")
    max_length: int | None = opt(None, "longest training sequence in tokens (default: the "
                                 "model's context); longer conversations are cut, and counted")
    packing: bool = opt(False, "pack several conversations into each sequence of max_length "
                        "(each attends only to itself): fewer pad tokens, faster epochs")
    # optimisation
    epochs: float = opt(3.0, "passes over the training set (fractions allowed)")
    max_steps: int | None = opt(None, "stop after this many optimizer steps (overrides epochs)")
    batch_size: int = opt(8, "sequences per optimizer step")
    learning_rate: float = opt(1e-4, "peak learning rate (LoRA: use ~1e-3)")
    weight_decay: float = opt(0.0, "AdamW weight decay (not on norms and biases)")
    warmup_ratio: float = opt(0.03, "share of the steps with a linear warmup")
    schedule: str = opt("cosine", "decay after warmup", choices=["linear", "cosine", "constant"])
    grad_clip: float = opt(1.0, "clip the global gradient norm (0: off)")
    group_by_length: bool = opt(True, "batch conversations of similar length together")
    # LoRA
    lora: bool = opt(False, "train LoRA adapters (peft) instead of all weights")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA scaling alpha")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    lora_targets: list[str] = opt(["wqkv", "wo", "w13", "w2"], "layers that get adapters "
                                  "(attention: wqkv, wo; MLP: w13, w2)")
    # evaluation, early stopping, checkpoints
    eval_every: int | None = opt(None, "evaluate every N steps (default: once per epoch)")
    patience: int = opt(0, "stop after this many evaluations without a lower val loss (0: never)")
    seed: int = opt(42, "random seed (shuffling, LoRA initialisation, dropout)")
    device: str = opt("auto", "device: " + DEVICES)
    precision: str = opt("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16",
                         choices=["auto", "fp32", "bf16"])
    resume: str | None = opt(None, "continue an interrupted run: its run id or directory")

    presets: ClassVar = {
        "default": {},
        "lora": {"lora": True, "learning_rate": 1e-3},
        "test": {"epochs": 1.0, "batch_size": 4, "max_length": 64},
    }
    preset_help: ClassVar = {
        "default": "full fine-tuning, 3 epochs, lr 1e-4, cosine",
        "lora": "LoRA adapters (r=8) on every linear layer, lr 1e-3",
        "test": "one short epoch: for tests",
    }

    def validate(self):
        super().validate()
        if not 0.0 < self.val_fraction < 1.0:
            raise GoldmineError(f"val_fraction: must be between 0 and 1, got {self.val_fraction}")
        for name in ("batch_size", "lora_r"):
            if getattr(self, name) < 1:
                raise GoldmineError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 8:
            raise GoldmineError(f"max_length: must be >= 8, got {self.max_length}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise GoldmineError("epochs and learning_rate must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise GoldmineError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if not self.lora_targets:
            raise GoldmineError("lora_targets: name at least one layer")


@dataclass
class EvaluateConfig(Config):
    """goldmine evaluate: metrics of a trained model on labelled data, a report, and a gate
    against a baseline run."""

    model: str | None = opt(None, "what to evaluate, a run id or directory: a fine-tuned "
                            "classifier, a GPT (perplexity on text) or a chat model from "
                            "`finetune sft` (answer perplexity and samples); with --folds, the "
                            "backbone to fine-tune")
    data: str | None = opt(None, "a prepared dataset (its test split, else val) or a "
                           ".csv/.tsv/.jsonl file with text and label columns (text files for "
                           "a GPT); for an image classifier: digits, an IDX folder or an image "
                           "folder (test split, else val, else all of it)")
    split: str | None = opt(None, "which split of a prepared dataset (default: test, else val)")
    text_column: str = opt("text", "raw files: column holding the text")
    label_column: str = opt("label", "raw files: column holding the label")
    batch_size: int = opt(64, "examples per forward pass")
    max_length: int | None = opt(None, "truncate texts to this many tokens (default: as trained)")
    out: str | None = opt(None, "output directory (default: the run directory under GOLDMINE_HOME)")
    baseline: str | None = opt(None, "an earlier evaluate run (id or directory) on the same data "
                               "to compare with")
    max_drop: list[str] = opt([], "with --baseline: fail (exit 3) when a metric drops by more "
                              "than this many points (percentage points), e.g. f1_macro=0.5")
    folds: int | None = opt(None, "K-fold cross-validation: fine-tune --model K times on a "
                            "dataset prepared with --folds K, each time validating on one fold; "
                            "reports mean ± std")
    finetune: str | None = opt(None, "with --folds: a YAML file of `finetune classify` options "
                               "(epochs, learning_rate, ...)")
    samples: int = opt(8, "chat models: generations shown beside their references")
    max_new_tokens: int = opt(128, "chat models: longest generation, in tokens")
    device: str = opt("auto", "device: " + DEVICES)

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "test split, batch 64"}

    def validate(self):
        super().validate()
        if self.batch_size < 1:
            raise GoldmineError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 1:
            raise GoldmineError(f"max_length: must be >= 1, got {self.max_length}")
        if self.folds is not None and self.folds < 2:
            raise GoldmineError(f"folds: must be >= 2 (each fold is validated on once), got "
                                f"{self.folds}")


@dataclass
class PredictConfig(Config):
    """goldmine predict: label a file with a fine-tuned classifier (streamed)."""

    model: str | None = opt(None, "a fine-tuned classifier: its run id or directory")
    inputs: list[str] = opt([], "CSV/TSV/JSONL/TXT files to label; for an image classifier "
                            "(--arch cnn): image files, folders of them, an IDX folder or digits",
                            positional=True, metavar="INPUT")
    out: str | None = opt(None, "output file (.jsonl or .csv; default: INPUT.predictions.jsonl)")
    text_column: str = opt("text", "column holding the text")
    batch_size: int = opt(64, "examples per forward pass")
    max_length: int | None = opt(None, "truncate texts to this many tokens (default: as trained)")
    top_k: int | None = opt(None, "keep only the k most likely labels' probabilities (default: all)")
    device: str = opt("auto", "device: " + DEVICES)

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "all probabilities, batch 64"}

    def validate(self):
        super().validate()
        if self.batch_size < 1:
            raise GoldmineError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.top_k is not None and self.top_k < 1:
            raise GoldmineError(f"top_k: must be >= 1, got {self.top_k}")


@dataclass
class ExportConfig(Config):
    """goldmine export: a run in a format other tools read: a Hugging Face directory
    (transformers, vLLM, TGI), ONNX (ONNX Runtime) or GGUF (llama.cpp), with a model card.
    Written to a temporary directory, validated, then renamed into place."""

    run: str | None = opt(None, "what to export: a run id (or unique prefix) or directory of "
                          "`pretrain`, `finetune sft`, `finetune classify` or `quantize`; a "
                          "checkpoint directory; or a local Hugging Face directory",
                          positional=True, metavar="RUN")
    format: str = opt("hf", "hf: a Hugging Face directory (GPT -> Llama; classifiers as they "
                      "are); onnx: model.onnx with dynamic batch and sequence axes; gguf: one "
                      ".gguf file for llama.cpp (GPT only)", choices=["hf", "onnx", "gguf"])
    out: str | None = opt(None, "output directory; it must not exist unless --overwrite "
                          "(default: GOLDMINE_HOME/<export run id>)")
    overwrite: bool = opt(False, "replace --out if it exists (only once the new export is "
                          "complete)")
    merge_lora: bool = opt(False, "fold the run's LoRA adapter (its adapter/ directory) into "
                           "the base model's weights, W + (alpha/r)·B·A, instead of exporting "
                           "the merged copy saved at training time; refused for runs without "
                           "an adapter")
    checkpoint: str = opt("best", "pretrain runs: which checkpoint (best, last or a step number)")
    gguf_type: str = opt("f16", "gguf: tensor type of the 2-D weights (norms stay f32)",
                         choices=["f32", "f16", "q8_0"])
    opset: int = opt(18, "onnx: ONNX opset version")
    license: str = opt("other", "the license field of the model card (e.g. apache-2.0, mit); "
                       "use the most restrictive license of the training data")

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "Hugging Face format, best checkpoint"}

    def validate(self):
        super().validate()
        if not self.run:
            raise GoldmineError("run: name the run to export (goldmine export RUN --format hf)")
        if self.opset < 14:
            raise GoldmineError(f"opset: must be >= 14 (scaled dot-product attention), got "
                                f"{self.opset}")


@dataclass
class QuantizeConfig(Config):
    """goldmine quantize: int8 weights for CPU inference, and what it cost: file size, latency
    per batch and the task metric (accuracy/F1 for classifiers, perplexity for GPTs) before
    and after. The result loads in `goldmine evaluate`, `generate`, `predict` and `serve`."""

    run: str | None = opt(None, "what to quantize: a `finetune classify`, `pretrain` or "
                          "`finetune sft` run (id or directory) or a checkpoint directory",
                          positional=True, metavar="RUN")
    method: str = opt("int8-dynamic", "int8-dynamic: int8 weights (per output channel) and "
                      "activations quantized per batch at run time, the fastest on CPU; "
                      "int8-weight-only: int8 weights dequantized per matmul, activations stay "
                      "fp32 (smallest accuracy change, no speed-up)",
                      choices=["int8-dynamic", "int8-weight-only"])
    data: str | None = opt(None, "data to measure the metric on: a prepared dataset (test "
                           "split, else val) or a file (.csv/.tsv/.jsonl for classifiers, text "
                           "for GPTs); default: the validation data the run was trained with")
    out: str | None = opt(None, "output directory (default: the run directory under "
                          "GOLDMINE_HOME); refused if it exists unless --overwrite")
    overwrite: bool = opt(False, "replace --out if it exists")
    batch_size: int = opt(32, "examples (classifiers) or sequences (GPTs) per batch, for the "
                          "metric and the latency")
    max_batches: int | None = opt(50, "measure on at most this many batches (none: all)")
    threads: int | None = opt(None, "CPU threads for the latency measurement (default: "
                              "PyTorch's choice)")

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "int8-dynamic, metric on up to 50 batches of 32"}

    def validate(self):
        super().validate()
        if not self.run:
            raise GoldmineError("run: name the run to quantize (goldmine quantize RUN)")
        if self.batch_size < 1:
            raise GoldmineError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.max_batches is not None and self.max_batches < 1:
            raise GoldmineError(f"max_batches: must be >= 1, got {self.max_batches}")
        if self.threads is not None and self.threads < 1:
            raise GoldmineError(f"threads: must be >= 1, got {self.threads}")


@dataclass
class QuickstartConfig(Config):
    """goldmine quickstart: sample data -> tokenizer -> pretraining -> samples, and a sentiment
    classifier fine-tuned from the embedded MiniLM and evaluated, end to end."""

    out: str | None = opt(None, "working directory for the sample data "
                          "(default: GOLDMINE_HOME/quickstart)")
    seed: int = opt(0, "seed for the sample data and training")
    scale: float = opt(1.0, "size of the sample corpus (1.0 is about 1.3 MB)")
    vocab_size: int = opt(4096, "BPE vocabulary size")
    max_steps: int = opt(600, "pretraining steps")
    max_time: str = opt("2m", "pretraining wall-time limit")
    model: str = opt("tiny", "model preset", choices=list(MODEL_PRESETS))
    prompt: list[str] = opt(["The wool scarf", "User: Where is my order"],
                            "prompts to sample from at the end")
    classify_steps: int = opt(80, "steps of fine-tuning the embedded MiniLM on the review "
                              "sentiment data (0: skip the classification part)")
    serve: str = opt("auto", "at the end, serve the trained models over the OpenAI-compatible "
                     "API and call it once per endpoint; then 'forever': keep serving until "
                     "Ctrl-C, 'check': stop, 'auto': keep serving when run in a terminal, "
                     "'off': no server", choices=["auto", "forever", "check", "off"])
    port: int = opt(8000, "port for the server (a free one if it is taken)")
    device: str = opt("auto", "device: " + DEVICES)

    presets: ClassVar = {
        "default": {},
        "smoke": {"scale": 0.05, "vocab_size": 512, "max_steps": 8, "model": "test",
                  "max_time": "60s", "classify_steps": 2, "serve": "check", "port": 0},
    }
    preset_help: ClassVar = {"default": "about two minutes on a laptop CPU",
                             "smoke": "seconds: a check that everything is wired"}


@dataclass
class ServeConfig(Config):
    """goldmine serve: an OpenAI-compatible HTTP API (chat, completions, embeddings, classify)
    with continuous batching, API keys, quotas, usage records, /metrics and a web playground
    at http://HOST:PORT/."""

    model: list[str] = opt([], "a model to serve as NAME=PATH: a goldmine GPT run or checkpoint "
                           "(chat / completions), a local Hugging Face Llama/Mistral/Qwen2 "
                           "directory, a `finetune classify` run (/v1/classify) or an encoder "
                           "directory or 'minilm' (/v1/embeddings); default: the latest "
                           "`finetune sft` (else `pretrain`) run and the latest `finetune "
                           "classify` run", metavar="NAME=PATH")
    embeddings: str | None = opt("minilm", "encoder served at /v1/embeddings as 'minilm' when "
                                 "--model names no encoder ('none': no embeddings)")
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0 exposes the server to the "
                    "network: keep --auth on)")
    port: int = opt(8000, "TCP port (0: any free port)")
    auth: bool = opt(True, "require `Authorization: Bearer KEY` (keys from `goldmine keys "
                     "create`); --no-auth is for local development only")
    db: str | None = opt(None, "SQLite database for API keys, usage and feedback (default: the "
                         "registry database, GOLDMINE_HOME/registry.db)")
    max_batch: int = opt(32, "sequences decoded together per model (KV cache slots)")
    max_queue: int = opt(256, "requests waiting for a slot before the server answers 503 with "
                         "Retry-After")
    max_cached_tokens: int | None = opt(None, "cap on prompt + max_tokens summed over running "
                                        "requests per model (default: max_batch x context)")
    prefill_chunk: int = opt(128, "prompt tokens prefilled per scheduler turn: long prompts are "
                             "split so streaming clients keep getting tokens")
    compile: bool = opt(False, "torch.compile each GPT (dynamic shapes): faster small-batch "
                        "decoding (about 1.4x per token at batch 1 on a 2-core CPU) after 20-60 s "
                        "of compiling at start; a batch shape not seen yet may compile again on "
                        "first use")
    default_max_tokens: int = opt(512, "max_tokens when a request gives none (capped by the "
                                  "context left after the prompt)")
    log_conversations: bool = opt(True, "keep each chat request and answer in the database so "
                                  "that /v1/feedback can refer to it (`goldmine data "
                                  "from-feedback` exports them)")
    device: str = opt("auto", "device: " + DEVICES)

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "127.0.0.1:8000, keys required, batch 32"}

    def validate(self):
        super().validate()
        for name in ("max_batch", "prefill_chunk", "default_max_tokens"):
            if getattr(self, name) < 1:
                raise GoldmineError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise GoldmineError(f"max_queue: must be >= 0, got {self.max_queue}")
        if not 0 <= self.port <= 65535:
            raise GoldmineError(f"port: must be 0-65535, got {self.port}")
        if self.max_cached_tokens is not None and self.max_cached_tokens < 2:
            raise GoldmineError(f"max_cached_tokens: must be >= 2, got {self.max_cached_tokens}")


@dataclass
class ChatConfig(Config):
    """goldmine chat: talk to a chat model in the terminal, answers streamed as they are
    generated; /reset starts over, /exit (or Ctrl-D) ends."""

    model: str | None = opt(None, "a run id or directory (loaded here), or with --url the "
                            "served model's name (default: the server's first chat model)")
    url: str | None = opt(None, "a running `goldmine serve` (or any OpenAI-compatible server), "
                          "e.g. http://127.0.0.1:8000")
    api_key: str | None = opt(None, "API key for --url (default: $GOLDMINE_API_KEY, then "
                              "$OPENAI_API_KEY)")
    system: str | None = opt(None, "system message that starts the conversation")
    max_tokens: int = opt(256, "longest answer in tokens")
    temperature: float = opt(0.7, "sampling temperature (0: greedy)")
    top_p: float = opt(0.95, "nucleus sampling: smallest set of tokens with this probability")
    seed: int | None = opt(None, "random seed (a fixed seed gives the same answers)")
    device: str = opt("auto", "device for a model loaded here: " + DEVICES)

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "temperature 0.7, answers up to 256 tokens"}

    def validate(self):
        super().validate()
        if self.max_tokens < 1:
            raise GoldmineError(f"max_tokens: must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise GoldmineError(f"temperature: must be >= 0, got {self.temperature}")


@dataclass
class FromFeedbackConfig(Config):
    """goldmine data from-feedback: rated answers from the server's playground and API
    (/v1/feedback) as a `chat` JSONL dataset for `data prepare --kind chat` and `finetune sft`.
    A correction replaces the model's answer (it is what the user wanted)."""

    out: str = opt("feedback.jsonl", "output JSONL file")
    min_rating: int = opt(1, "keep answers rated at least this (-1, 0 or 1)")
    model: str | None = opt(None, "only conversations with this served model name")
    corrections: bool = opt(True, "use corrections (also of answers rated below --min-rating)")
    db: str | None = opt(None, "the server's database (default: GOLDMINE_HOME/registry.db)")

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "answers rated thumbs-up, and every corrected answer"}


def parse_duration(text: str | float | int) -> float:
    """'90' / '90s' / '2m' / '1.5h' -> seconds."""
    s = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if s and s[-1] in units:
            return float(s[:-1]) * units[s[-1]]
        return float(s)
    except ValueError:
        raise GoldmineError(f"max_time: expected a duration like 90s, 2m or 1.5h, got {text!r}") from None


# ----------------------------------------------------------------------------------------------
# goldmine cost
# ----------------------------------------------------------------------------------------------
HARDWARE_HELP = ("device from the hardware catalog (goldmine/cost/hardware.yaml), e.g. "
                 "h100-sxm, h200, a100-80gb, l40s, l4, t4, or cpu (measured now); an unknown name "
                 "lists them all")
HARDWARE_FILE_HELP = ("YAML file of hardware entries merged over the catalog, field by field "
                      "(e.g. `h100-sxm: {price_per_gpu_hour: 2.1}`; a new name adds a device)")
MODEL_REF_HELP = ("the model's shape: a model preset (" + ", ".join(MODEL_PRESETS) + "), a "
                  "goldmine run or checkpoint, or a config file (goldmine config.json, a Hugging "
                  "Face config.json, or YAML with n_layer, n_embd, ...)")
VOCAB_HELP = ("vocabulary size of a --model preset (default: 50257 for gpt2-*, 128256 for "
              "llama-1b, 32000 for llama-7b, else 8192) or override of a config's")
COST_DTYPES = ["fp32", "tf32", "bf16", "fp16", "fp8"]
# the model presets, as `--preset NAME` of the cost commands that take a model
_MODEL_AS_PRESET = {name: {"model": name} for name in MODEL_PRESETS}
_MODEL_PRESET_HELP = {name: f"--model {name}" for name in MODEL_PRESETS}


def _check_positive(cfg: Config, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise GoldmineError(f"{name}: must be > 0, got {value}")


def _check_fraction(cfg: Config, name: str) -> None:
    value = getattr(cfg, name)
    if value is not None and not 0 < value <= 1:
        raise GoldmineError(f"{name}: must be in (0, 1], got {value}")


def _check_hardware(cfg: Config) -> None:
    """An unknown --hardware (or a broken --hardware-file) fails here, listing the known names."""
    if cfg.hardware is not None or cfg.hardware_file is not None:
        from goldmine.cost.hardware import get_hardware, load_catalog

        load_catalog(cfg.hardware_file)
        if cfg.hardware is not None:
            get_hardware(cfg.hardware, cfg.hardware_file)


def _at_most_one(cfg: Config, names: tuple[str, ...], what: str) -> list[str]:
    given = [n for n in names if getattr(cfg, n) is not None]
    if len(given) > 1:
        raise GoldmineError(f"{', '.join(given)}: give only one {what} "
                            f"(one of {', '.join(names)})")
    return given


@dataclass
class CostTrainConfig(Config):
    """goldmine cost train: what pretraining costs: FLOPs (6·N·D plus the attention term),
    GPU-hours, wall time, energy and money on a device of the hardware catalog. The speed is an
    MFU (default 0.4), a measured throughput (--tokens-per-s, or --step-time and
    --tokens-per-step), the GPU-hours of a known run (which gives its MFU), or the MFU that a
    goldmine pretrain run measured (--from-run), projected to the size and hardware asked for."""

    params: int | None = opt(None, "parameters N of 6·N·D, e.g. 7e9 (default: the weights in "
                             "matrix multiplies of --model)")
    tokens: int | None = opt(None, "training tokens D, e.g. 2e12 (default with --from-run: the "
                             "run's)")
    model: str | None = opt(None, MODEL_REF_HELP + "; gives N and the attention term")
    vocab_size: int | None = opt(None, VOCAB_HELP)
    seq_len: int | None = opt(None, "context length T of the attention term (default: the "
                              "model's block_size)")
    hardware: str | None = opt(None, HARDWARE_HELP + " (default with --from-run of a CPU run: "
                               "cpu; without hardware only FLOPs are computed)")
    gpus: int = opt(1, "devices training together")
    dtype: str | None = opt(None, "precision of the matrix multiplies, which sets the peak "
                            "FLOP/s (default: bf16 where the device has it, else fp16; fp32 on "
                            "a CPU)", choices=COST_DTYPES)
    mfu: float | None = opt(None, "model FLOPs utilization in (0, 1] (default: 0.4, or "
                            "measured by --from-run)")
    tokens_per_s: float | None = opt(None, "measured training throughput of all --gpus "
                                     "together, tokens/s")
    step_time: float | None = opt(None, "measured seconds per optimizer step (with "
                                  "--tokens-per-step)")
    tokens_per_step: int | None = opt(None, "tokens per optimizer step, all GPUs together")
    gpu_hours: float | None = opt(None, "GPU-hours a known run took (a published figure): "
                                  "gives its MFU")
    from_run: str | None = opt(None, "a goldmine pretrain run (id or directory): its model, "
                               "tokens and measured MFU, projected to the options given here")
    price_per_gpu_hour: float | None = opt(None, "USD per device-hour (default: the catalog's "
                                           "indicative on-demand price)")
    pue: float = opt(1.0, "power usage effectiveness: energy = board power × GPU-hours × PUE "
                     "(1.0 counts the boards alone; data centres run 1.1-1.5)")
    hardware_file: str | None = opt(None, HARDWARE_FILE_HELP)
    explain: bool = opt(False, "print the formulas with the numbers substituted")

    presets: ClassVar = {
        "default": {},
        **_MODEL_AS_PRESET,
        "gpt3-175b": {"params": 175_000_000_000, "tokens": 300_000_000_000},
        "llama2-7b": {"params": 6_740_000_000, "tokens": 2_000_000_000_000,
                      "hardware": "a100-80gb", "gpu_hours": 184_320},
        "llmc-gpt2-124m": {"model": "gpt2-124m", "tokens": 10_000_000_000,
                           "hardware": "a100-80gb", "gpus": 8, "step_time": 0.3,
                           "tokens_per_step": 524_288, "price_per_gpu_hour": 1.75},
    }
    preset_help: ClassVar = {
        "default": "give --params/--model and --tokens",
        **_MODEL_PRESET_HELP,
        "gpt3-175b": "GPT-3: 175B parameters, 300B tokens (Brown et al. 2020: 3.14e23 FLOPs)",
        "llama2-7b": "Llama 2 7B: 2T tokens in 184,320 A100-80GB GPU-hours (Touvron et al. "
                     "2023)",
        "llmc-gpt2-124m": "llm.c GPT-2 124M: 10B tokens on 8×A100 at 0.3 s per 524,288-token "
                          "step, $14/hour for the node",
    }

    def validate(self):
        super().validate()
        _check_positive(self, "params", "tokens", "vocab_size", "seq_len", "gpus",
                        "tokens_per_s", "step_time", "tokens_per_step", "gpu_hours",
                        "price_per_gpu_hour")
        _check_fraction(self, "mfu")
        if self.pue < 1:
            raise GoldmineError(f"pue: must be >= 1 (total facility power over IT power), got "
                                f"{self.pue}")
        _at_most_one(self, ("mfu", "tokens_per_s", "step_time", "gpu_hours"),
                     "way to set the speed")
        if self.step_time is not None and self.tokens_per_step is None:
            raise GoldmineError("tokens_per_step: --step-time needs --tokens-per-step")
        if self.from_run is None:
            if self.params is None and self.model is None:
                raise GoldmineError("params: give --params N or --model (or a --preset, or "
                                    "--from-run RUN)")
            if self.tokens is None:
                raise GoldmineError("tokens: give --tokens D, the training tokens")
        _check_hardware(self)


@dataclass
class CostOptimalConfig(Config):
    """goldmine cost optimal: the compute-optimal model for a budget (Chinchilla: about 20
    tokens per parameter with C = 6·N·D, and the Hoffmann et al. 2022 loss fit
    L(N, D) = E + A/N^α + B/D^β), with the predicted loss; or, for a given model, the tokens it
    needs. A budget in money or GPU-hours is turned into FLOPs with --hardware, --mfu and the
    price."""

    flops: float | None = opt(None, "compute budget C in FLOPs, e.g. 5.76e23")
    budget: float | None = opt(None, "budget in USD (with --hardware; the catalog price unless "
                               "--price-per-gpu-hour)")
    gpu_hours: float | None = opt(None, "budget in GPU-hours (with --hardware)")
    params: int | None = opt(None, "a model size N instead of a budget: the tokens it needs and "
                             "its predicted loss")
    model: str | None = opt(None, MODEL_REF_HELP + "; instead of a budget, like --params")
    vocab_size: int | None = opt(None, VOCAB_HELP)
    tokens_per_param: float = opt(20.0, "tokens per parameter of the compute-optimal rule "
                                  "(Hoffmann et al. 2022: about 20)")
    hardware: str | None = opt(None, HARDWARE_HELP + " (for GPU-hours, time and money)")
    gpus: int = opt(1, "devices training together (for the wall time)")
    dtype: str | None = opt(None, "precision of the matrix multiplies, which sets the peak "
                            "FLOP/s (default: bf16 where the device has it, else fp16; fp32 on "
                            "a CPU)", choices=COST_DTYPES)
    mfu: float = opt(0.4, "model FLOPs utilization in (0, 1]")
    price_per_gpu_hour: float | None = opt(None, "USD per device-hour (default: the catalog's)")
    hardware_file: str | None = opt(None, HARDWARE_FILE_HELP)

    presets: ClassVar = {"default": {}, **_MODEL_AS_PRESET,
                         "chinchilla": {"flops": 5.76e23}}
    preset_help: ClassVar = {"default": "give --flops, --budget, --gpu-hours, --params or "
                                        "--model", **_MODEL_PRESET_HELP,
                             "chinchilla": "Gopher's budget, 5.76e23 FLOPs: Chinchilla is 70B "
                                           "parameters on 1.4T tokens"}

    def validate(self):
        super().validate()
        _check_positive(self, "flops", "budget", "gpu_hours", "params", "vocab_size",
                        "tokens_per_param", "gpus", "price_per_gpu_hour")
        _check_fraction(self, "mfu")
        given = _at_most_one(self, ("flops", "budget", "gpu_hours", "params", "model"),
                             "budget or model size")
        if not given:
            raise GoldmineError("flops: give a budget (--flops, --budget or --gpu-hours) or a "
                                "model size (--params or --model)")
        if given[0] in ("budget", "gpu_hours") and self.hardware is None:
            raise GoldmineError(f"hardware: --{given[0].replace('_', '-')} is converted to FLOPs "
                                "with a device's peak: name one with --hardware")
        _check_hardware(self)


@dataclass
class CostMemoryConfig(Config):
    """goldmine cost memory: will it fit? Training: weights, gradients, AdamW state (fp32
    moments, fp32 master weights under mixed precision) and activations, per GPU, for plain
    data parallelism or sharded (FSDP / ZeRO-3). Serving: weights and the KV cache for a
    number of concurrent sequences. Prints each term in GB (1e9 bytes), the total against the
    device's memory, the headroom, and the largest batch or concurrency that fits."""

    model: str | None = opt(None, MODEL_REF_HELP)
    params: int | None = opt(None, "parameters, when there is no --model (training only; "
                             "activations are then left out)")
    vocab_size: int | None = opt(None, VOCAB_HELP)
    mode: str = opt("train", "train: weights, gradients, optimizer, activations; serve: "
                    "weights and KV cache", choices=["train", "serve"])
    hardware: str | None = opt(None, HARDWARE_HELP)
    gpus: int = opt(1, "devices")
    sharded: bool = opt(False, "train: weights, gradients and optimizer state sharded over "
                        "--gpus (FSDP FULL_SHARD / ZeRO-3); serve: weights split over --gpus "
                        "(tensor parallel)")
    precision: str = opt("bf16", "train: fp32, or bf16/fp16 mixed precision (fp32 master "
                         "weights and moments); serve: the weights' dtype",
                         choices=["fp32", "bf16", "fp16", "fp8", "int8", "int4"])
    batch_size: int = opt(1, "train: sequences per GPU per micro-batch")
    seq_len: int | None = opt(None, "train: tokens per sequence (default: the model's "
                              "block_size)")
    checkpointing: bool = opt(False, "train: activation checkpointing (keep each block's input, "
                              "recompute the rest in the backward pass)")
    concurrency: int = opt(1, "serve: sequences in flight at once")
    context: int | None = opt(None, "serve: tokens per sequence, prompt and answer (default: "
                              "the model's block_size)")
    kv_precision: str | None = opt(None, "serve: KV cache dtype (default: the weights' for "
                                   "fp32/bf16/fp16, else bf16)",
                                   choices=["fp32", "bf16", "fp16", "fp8", "int8"])
    reserve_gb: float = opt(1.0, "memory kept free for the CUDA context, kernel workspaces and "
                            "fragmentation, GB")
    hardware_file: str | None = opt(None, HARDWARE_FILE_HELP)

    presets: ClassVar = {"default": {}, **_MODEL_AS_PRESET}
    preset_help: ClassVar = {"default": "give --model or --params", **_MODEL_PRESET_HELP}

    def validate(self):
        super().validate()
        _check_positive(self, "params", "vocab_size", "gpus", "batch_size", "seq_len",
                        "concurrency", "context")
        if self.reserve_gb < 0:
            raise GoldmineError(f"reserve_gb: must be >= 0, got {self.reserve_gb}")
        _at_most_one(self, ("model", "params"), "model")
        if self.model is None and self.params is None:
            raise GoldmineError("model: give --model (a preset, run or config file) or "
                                "--params")
        if self.mode == "serve" and self.model is None:
            raise GoldmineError("model: --mode serve needs the model's shape for the KV cache: "
                                "give --model")
        if self.mode == "train" and self.precision not in ("fp32", "bf16", "fp16"):
            raise GoldmineError(f"precision: training runs in fp32, bf16 or fp16, got "
                                f"{self.precision}")
        if self.hardware is None:
            raise GoldmineError("hardware: name the device to fit on, e.g. --hardware h100-sxm")
        _check_hardware(self)


@dataclass
class CostServeConfig(Config):
    """goldmine cost serve: what serving costs per 1M input tokens, per 1M output tokens and
    per request, from a measured throughput (--tokens-per-s, or the JSON of bench/serve.py with
    --from-bench), the device's hourly price and the share of paid time spent serving. An input
    (prompt) token costs --input-cost-ratio of an output token unless --prefill-tokens-per-s
    gives the measured ratio. --usage prices what each API key used (`goldmine keys usage`)."""

    from_bench: str | None = opt(None, "the JSON object bench/serve.py prints (saved to a "
                                 "file): its goldmine tokens/s and request shape")
    tokens_per_s: float | None = opt(None, "measured output (generated) tokens/s of the whole "
                                     "deployment (all --gpus) at full load")
    prefill_tokens_per_s: float | None = opt(None, "measured prompt (prefill) tokens/s: gives "
                                             "the input/output cost ratio")
    hardware: str | None = opt(None, HARDWARE_HELP + " (default with --from-bench: cpu, "
                               "where bench/serve.py runs)")
    gpus: int = opt(1, "devices of the deployment")
    price_per_gpu_hour: float | None = opt(None, "USD per device-hour (default: the catalog's)")
    utilization: float = opt(0.5, "share of paid hours spent serving at the measured "
                             "throughput, in (0, 1]")
    prompt_tokens: int | None = opt(None, "input tokens per request (default: the bench's, "
                                    "else 500)")
    output_tokens: int | None = opt(None, "output tokens per request (default: the bench's, "
                                    "else 250)")
    input_cost_ratio: float = opt(0.25, "cost of an input token over an output token when no "
                                  "prefill throughput is given (API price lists charge 1/4 to "
                                  "1/5; prefill is often cheaper still)")
    usage: bool = opt(False, "also price the usage the server recorded per API key")
    db: str | None = opt(None, "the server's database for --usage (default: "
                         "GOLDMINE_HOME/registry.db)")
    days: int | None = opt(None, "--usage: only the last N UTC days")
    hardware_file: str | None = opt(None, HARDWARE_FILE_HELP)

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "utilization 0.5, input tokens at 1/4 of output"}

    def validate(self):
        super().validate()
        _check_positive(self, "tokens_per_s", "prefill_tokens_per_s", "gpus",
                        "price_per_gpu_hour", "prompt_tokens", "output_tokens",
                        "input_cost_ratio", "days")
        _check_fraction(self, "utilization")
        given = _at_most_one(self, ("from_bench", "tokens_per_s"), "throughput")
        if not given:
            raise GoldmineError("tokens_per_s: give the measured throughput (--tokens-per-s X) "
                                "or a bench/serve.py result (--from-bench FILE)")
        if self.hardware is None and self.from_bench is None:
            raise GoldmineError("hardware: name the device the throughput was measured on, "
                                "e.g. --hardware l4")
        _check_hardware(self)


@dataclass
class CostPlanConfig(Config):
    """goldmine cost plan: a business plan month by month: users, revenue, serving and
    training costs, profit, cumulative cash, break-even, a sensitivity table, charts and a
    verdict: gold mine, marginal or bubble."""

    plan: str | None = opt(None, "the plan (YAML; default: the example plan shipped with "
                           "goldmine)", positional=True, metavar="PLAN.yaml")
    serving_cost_per_1m: float | None = opt(None, "serving cost in USD per 1M tokens (e.g. "
                                            "from `goldmine cost serve`), over the plan's")
    training_cost: float | None = opt(None, "cost of one training run in USD (e.g. from "
                                      "`goldmine cost train`), over the plan's")
    out: str | None = opt(None, "directory for the charts (PNG) and the plan's results")
    charts: bool = opt(True, "draw the PNG charts")
    init: str | None = opt(None, "write the example plan, every field commented, to this file "
                           "(to edit into your own) and stop", metavar="FILE.yaml")

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "the plan's own figures"}

    def validate(self):
        super().validate()
        _check_positive(self, "serving_cost_per_1m")
        if self.training_cost is not None and self.training_cost < 0:
            raise GoldmineError(f"training_cost: must be >= 0, got {self.training_cost}")


# ----------------------------------------------------------------------------------------------
# goldmine compare
# ----------------------------------------------------------------------------------------------
@dataclass
class CompareConfig(Config):
    """goldmine compare: is the bigger classifier worth it? Two or more classifiers on the same
    rows: accuracy and macro F1 with bootstrap confidence intervals, parameters, size on disk,
    CPU latency and throughput (measured now, models taking turns), cost per million
    predictions; each against the baseline with a paired bootstrap interval, McNemar's test
    and one sentence on whether the gain is significant and what a point of it costs."""

    runs: list[str] = opt([], "the classifiers: `finetune classify` runs, `quantize` runs of "
                          "them or classifier directories (then give --data); or `evaluate` "
                          "runs of them (measured again on the data they evaluated, which must "
                          "be the same)", positional=True, metavar="RUN")
    data: str | None = opt(None, "labelled data all models are measured on: a prepared "
                           "classify dataset (its test split, else val) or a .csv/.tsv/.jsonl "
                           "file; image classifiers: digits, an IDX folder or an image folder "
                           "(default: the data of the evaluate runs given)")
    split: str | None = opt(None, "which split of a prepared dataset (default: test, else val)")
    text_column: str = opt("text", "raw files: column holding the text")
    label_column: str = opt("label", "raw files: column holding the label")
    baseline: str | None = opt(None, "the run the others are compared with, one of RUN "
                               "(default: the first; list the cheap model first)")
    batch_size: int = opt(32, "examples per batch, for the predictions and the throughput")
    bootstrap: int = opt(1000, "bootstrap resamples of the rows for the confidence intervals")
    seed: int = opt(0, "seed of the bootstrap resampling")
    reps: int = opt(9, "timing repetitions (the median is kept), after one warm-up")
    hardware: str = opt("cpu", "price an hour of this catalog entry (goldmine/cost/hardware.yaml;"
                        " the speed is measured on this machine's CPU)")
    hardware_file: str | None = opt(None, "YAML file of hardware entries merged over the "
                                    "catalog (e.g. `cpu: {price_per_gpu_hour: 0.05}`)")
    price_per_hour: float | None = opt(None, "USD per hour of the serving machine (default: "
                                       "the --hardware entry's price)")
    utilization: float = opt(0.5, "share of paid hours spent predicting at the measured "
                             "throughput, in (0, 1]")
    out: str | None = opt(None, "output directory (default: the run directory under "
                          "GOLDMINE_HOME)")

    presets: ClassVar = {"default": {}}
    preset_help: ClassVar = {"default": "1,000 bootstrap resamples, batch 32, priced as cpu"}

    def validate(self):
        super().validate()
        if len(self.runs) < 2:
            raise GoldmineError(f"runs: give two or more runs to compare (got {len(self.runs)})")
        for name in ("batch_size", "bootstrap", "reps"):
            if getattr(self, name) < 1:
                raise GoldmineError(f"{name}: must be >= 1, got {getattr(self, name)}")
        _check_positive(self, "price_per_hour")
        _check_fraction(self, "utilization")
        _check_hardware(self)
