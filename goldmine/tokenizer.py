"""Tokenizers: train, load, encode, decode. One tokenizer.json, readable by Hugging Face.

Two kinds, both lossless (decode(encode(text)) == text for any Unicode string):

  bpe   byte-level BPE (GPT-2 style): text -> UTF-8 bytes -> merges learned from your corpus.
        English and Chinese alike; no unknown token is ever needed.
  char  one token per character seen in the corpus (nanoGPT's shakespeare_char), plus the 256
        byte tokens <0x00>..<0xFF>: an unseen character is spelled as its UTF-8 bytes.

In a tokenizer goldmine trains, ids 0..6 are the special tokens below, in this order, so every
goldmine model agrees on what pad, bos, eos and the chat markers are. A Hugging Face model's
tokenizer gets those that it lacks appended to its vocabulary (`with_special_tokens`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from goldmine.errors import GoldmineError
from goldmine.files import write_text

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|end|>"]
SPECIAL_NAMES = ["pad", "bos", "eos", "system", "user", "assistant", "end"]
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"
UNK_TOKEN = "<|unk|>"  # only in char tokenizers trained without byte fallback
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
FILE_NAME = "tokenizer.json"
SAMPLE_BYTES = 1 << 20  # bytes_per_token is measured on this much input
# The tokenizers library buffers a few hundred items of a training iterator at once, so
# training gets small pieces (cut where tokenization is unaffected; see data/readers.py).
TRAIN_PIECE_BYTES = 64 * 1024


def _tokenizers():
    import tokenizers

    return tokenizers


class Tokenizer:
    """A goldmine tokenizer: a `tokenizers.Tokenizer` plus the exact JSON it was loaded from."""

    def __init__(self, tok: Any, json_text: str | None = None, path: Path | None = None):
        self._tok = tok
        self._json = json_text if json_text is not None else tok.to_str(pretty=True)
        self.path = path
        missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
        if missing:
            where = f"{path}: " if path else ""
            raise GoldmineError(f"{where}tokenizer lacks goldmine's special tokens "
                                f"{', '.join(missing)}; train one with `goldmine tokenizer train`")
        self.pad_id, self.bos_id, self.eos_id = (tok.token_to_id(t) for t in SPECIAL_TOKENS[:3])
        self.unk_id = tok.token_to_id(UNK_TOKEN)
        self.add_bos = True  # generation starts prompts with BOS (a checkpoint may say otherwise)
        spec = json.loads(self._json)
        model = spec.get("model") or {}
        byte_level = (spec.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
        # a character vocabulary: BPE without merges and without byte-level pre-tokenization
        char = model.get("type") == "BPE" and not model.get("merges") and not byte_level
        self._kind = "char" if char else "bpe"

    # -- loading and saving ---------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> Tokenizer:
        return cls(_parse(text, path), text, path)

    @classmethod
    def load(cls, ref: str | Path) -> Tokenizer:
        """A tokenizer.json path, a directory holding one, or a registry run id / run directory."""
        path = resolve_tokenizer_path(ref)
        try:
            text = path.read_bytes().decode("utf-8")  # bytes as-is: sha256 stays stable
        except UnicodeDecodeError:
            raise GoldmineError(f"{path}: not a tokenizer.json (not UTF-8 text)") from None
        except OSError as e:
            raise GoldmineError(f"{path}: cannot read tokenizer ({e.strerror or e})") from None
        return cls.from_json(text, path.resolve())

    def save(self, directory: str | Path) -> Path:
        """Write `directory/tokenizer.json` atomically; return its path."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        target = write_text(d / FILE_NAME, self._json)
        self.path = target.resolve()
        return target

    # -- facts ----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def special_ids(self) -> dict[str, int]:
        ids = {name: self._tok.token_to_id(t) for name, t in zip(SPECIAL_NAMES, SPECIAL_TOKENS)}
        if self.unk_id is not None:
            ids["unk"] = self.unk_id
        return ids

    @property
    def role_ids(self) -> dict[str, int]:
        return {role: self._tok.token_to_id(t) for role, t in ROLE_TOKENS.items()}

    @property
    def kind(self) -> str:
        """"char" for a character vocabulary, else "bpe"."""
        return self._kind

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self._json.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        return self._json

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, idx: int) -> str | None:
        return self._tok.id_to_token(idx)

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    # -- encoding -------------------------------------------------------------------------
    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts at once (in parallel in Rust); no bos/eos added."""
        return [e.ids for e in self.encode_batch_encodings(texts)]

    def encode_batch_encodings(self, texts: list[str]) -> list[Any]:
        """Like encode_batch but returns the library's Encoding objects (read `.ids` lazily,
        one at a time, to keep Python memory small on big batches)."""
        fast = getattr(self._tok, "encode_batch_fast", None) or self._tok.encode_batch
        return fast(list(texts), add_special_tokens=False)

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, path={self.path})"


def _parse(text: str, path: Path | None):
    """A `tokenizers.Tokenizer` from tokenizer.json text, or an error naming the file."""
    where = f"{path}: " if path else ""
    try:
        json.loads(text)
    except ValueError as e:
        raise GoldmineError(f"{where}not a tokenizer.json (not valid JSON: {e})") from None
    try:
        return _tokenizers().Tokenizer.from_str(text)
    except Exception as e:  # tokenizers raises plain Exception subclasses
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GoldmineError(f"{where}not a tokenizer.json the tokenizers library can read "
                            f"({msg})") from None


def with_special_tokens(path: Path) -> tuple[Tokenizer, list[str]]:
    """A tokenizer.json that may lack goldmine's special tokens (a Hugging Face model's), with
    the missing ones appended to its vocabulary; and the names of those added."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    tok = _parse(text, path)
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if not missing:
        return Tokenizer(tok, text, path), []
    added = _tokenizers().AddedToken
    tok.add_special_tokens([added(t, special=True, normalized=False) for t in missing])
    return Tokenizer(tok, path=path), missing


# ------------------------------------------------------------------------------ resolving
def resolve_tokenizer_path(ref: str | Path) -> Path:
    """tokenizer.json path | directory holding one | run directory | run id -> the json path."""
    if ref is None or str(ref) == "":
        raise GoldmineError("tokenizer: none given (a tokenizer.json, its directory or a run id)")
    p = Path(ref)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / FILE_NAME).is_file():
            return p / FILE_NAME
        if (p / "run.json").is_file():
            return _from_run(str(p))
        raise GoldmineError(f"{p}: no {FILE_NAME} in this directory")
    if os.sep in str(ref) or str(ref).endswith(".json"):
        raise GoldmineError(f"{p}: tokenizer not found")
    return _from_run(str(ref))


def _from_run(ref: str) -> Path:
    from goldmine.registry import Registry

    try:
        run = Registry().get(ref)
    except GoldmineError as e:
        raise GoldmineError(f"{ref}: not a tokenizer.json, a directory holding one, or a run id "
                            f"({e})") from None
    candidates = []
    art = run["artifacts"].get("tokenizer")
    if art:
        candidates += [Path(art), Path(art) / FILE_NAME]
    candidates.append(Path(run["run_dir"]) / FILE_NAME)
    shards = run["artifacts"].get("shards")
    if shards:
        candidates.append(Path(shards) / FILE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise GoldmineError(f"run {run['id']} ({run['command']}) has no {FILE_NAME} "
                        f"(looked in {run['run_dir']})")


# ------------------------------------------------------------------------------- building
def min_vocab_size(char: bool, byte_fallback: bool = True) -> int:
    if not char:
        return len(SPECIAL_TOKENS) + 256
    return len(SPECIAL_TOKENS) + (256 if byte_fallback else 1) + 1


def check_vocab_size(vocab_size: int, char: bool, byte_fallback: bool = True) -> None:
    need = min_vocab_size(char, byte_fallback)
    if vocab_size >= need:
        return
    if not char:
        why = f"the {len(SPECIAL_TOKENS)} special tokens and 256 byte symbols"
    elif byte_fallback:
        why = f"the {len(SPECIAL_TOKENS)} special tokens, 256 byte tokens and one character"
    else:
        why = f"the {len(SPECIAL_TOKENS)} special tokens, {UNK_TOKEN} and one character"
    raise GoldmineError(f"vocab_size {vocab_size} is too small: {why} need at least {need}")


def build_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Byte-level BPE trained from an iterator of texts (streamed; memory ~ distinct words)."""
    check_vocab_size(vocab_size, char=False)
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(tok)


def build_char(counts: Counter, vocab_size: int, byte_fallback: bool = True) -> Tokenizer:
    """A character vocabulary: specials, the most frequent characters, then byte tokens.

    Without byte fallback an unseen character becomes <|unk|> (decode is then lossy).
    """
    check_vocab_size(vocab_size, char=True, byte_fallback=byte_fallback)
    reserved = SPECIAL_TOKENS + ([] if byte_fallback else [UNK_TOKEN])
    room = vocab_size - len(reserved) - (256 if byte_fallback else 0)
    chars = sorted(counts, key=lambda c: (-counts[c], c))[:room]
    vocab: dict[str, int] = {}
    for t in reserved + chars + (BYTE_TOKENS if byte_fallback else []):
        vocab.setdefault(t, len(vocab))
    tk = _tokenizers()
    model = tk.models.BPE(vocab=vocab, merges=[], byte_fallback=byte_fallback,
                          unk_token=None if byte_fallback else UNK_TOKEN)
    tok = tk.Tokenizer(model)
    tok.add_special_tokens(reserved)
    steps = [tk.decoders.ByteFallback(), tk.decoders.Fuse()] if byte_fallback \
        else [tk.decoders.Fuse()]
    tok.decoder = tk.decoders.Sequence(steps)
    return Tokenizer(tok)


def bytes_per_token(tok: Tokenizer, files: list[Path], text_field: str = "text",
                    sample_bytes: int = SAMPLE_BYTES) -> float:
    """UTF-8 bytes per token on the first `sample_bytes` of the input."""
    from goldmine.data.readers import iter_texts

    n_bytes = n_tokens = 0
    for piece in iter_texts(files, text_field=text_field, max_bytes=sample_bytes):
        n_bytes += len(piece.text.encode("utf-8"))
        n_tokens += len(tok.encode(piece.text))
    return round(n_bytes / n_tokens, 4) if n_tokens else 0.0


# ------------------------------------------------------------------------------- training
def train_tokenizer(cfg) -> dict[str, Any]:
    """`goldmine tokenizer train` as a function: TokenizerConfig in, summary dict out."""
    from goldmine.data.readers import collect_files, iter_texts, total_bytes
    from goldmine.progress import human_bytes, progress_bar
    from goldmine.registry import start_run

    cfg.validate()
    files = collect_files(cfg.inputs)
    check_vocab_size(cfg.vocab_size, cfg.char, cfg.byte_fallback)
    if cfg.max_bytes is not None and cfg.max_bytes < 1:
        raise GoldmineError(f"max_bytes: must be >= 1, got {cfg.max_bytes}")
    size = total_bytes(files)
    if cfg.max_bytes is not None:
        size = min(size, cfg.max_bytes)

    with start_run("tokenizer train", cfg.to_dict(), out=cfg.out) as run:
        for f in files:
            run.add_parent_from_path(f)
        t0 = time.time()
        stats = {"documents": 0, "bytes": 0, "chars": 0}
        with progress_bar() as bar:
            task = bar.add_task("reading" if cfg.char else "training BPE", total=size,
                                stats="")

            def texts() -> Iterator[str]:
                for piece in iter_texts(files, cfg.text_field, cfg.max_bytes,
                                        chunk_bytes=TRAIN_PIECE_BYTES):
                    stats["documents"] += piece.doc_end
                    stats["bytes"] += piece.nbytes
                    stats["chars"] += len(piece.text)
                    rate = stats["bytes"] / max(time.time() - t0, 1e-9)
                    bar.update(task, advance=piece.nbytes,
                               stats=f"{stats['documents']:,} docs | {human_bytes(rate)}/s")
                    yield piece.text

            if cfg.char:
                counts: Counter = Counter()
                for text in texts():
                    counts.update(text)
                _check_not_empty(stats, files)
                tok = build_char(counts, cfg.vocab_size, cfg.byte_fallback)
            else:
                bpe = build_bpe(texts(), cfg.vocab_size, cfg.min_frequency)
                _check_not_empty(stats, files)
                tok = bpe
            bar.update(task, completed=size,
                       description="counted characters" if cfg.char else "trained BPE")
        path = tok.save(run.dir)
        seconds = round(time.time() - t0, 3)
        bpt = bytes_per_token(tok, files, cfg.text_field, SAMPLE_BYTES)
        metrics = {"vocab_size": tok.vocab_size, "kind": tok.kind,
                   "documents": stats["documents"], "bytes": stats["bytes"],
                   "bytes_per_token": bpt, "seconds": seconds}
        run.log_metrics(metrics)
        run.add_artifact("tokenizer", path)
        return {"run_id": run.id, "tokenizer": str(path), **metrics}


def _check_not_empty(stats: dict, files: list[Path]) -> None:
    if stats["chars"] == 0:
        names = ", ".join(map(str, files[:3])) + (", ..." if len(files) > 3 else "")
        raise GoldmineError(f"{names}: no text to train on (the documents are empty)")
