"""Data for masked-language modelling (`goldmine pretrain --objective mlm`): a WordPiece
tokenizer, the corpus as token ids in memory, and BERT's masking, written out.

    tok = mlm_tokenizer(files, None, work_dir)        # trained on the corpus, or one given
    corpus = MLMCorpus(encode_corpus(files, tok), tok) # train and val token ids, in memory
    x, y = corpus.get_batch("train", B, T, generator)  # masked inputs, targets (-100: none)

The tokenizer is BERT's kind: Unicode clean-up, lower case and accents stripped, every CJK
character split off as a word of its own (`BertNormalizer(handle_chinese_chars=True)`), words
split at whitespace and punctuation, then WordPiece with `##` continuations; [PAD] [UNK] [CLS]
[SEP] [MASK] are ids 0 to 4. It is saved with the model as tokenizer.json, vocab.txt and
tokenizer_config.json, so `transformers.AutoTokenizer` loads it as a BERT tokenizer.

Sequences are packed from the corpus as in RoBERTa's FULL-SENTENCES: documents are joined
into one stream with [SEP] between them, and a sequence is `block_size - 2` consecutive tokens
from any offset, framed `[CLS] ... [SEP]`. The last 10% of the stream is the validation split
(a prepared dataset's own val file, when it has one). The whole corpus is held in memory as
int32 ids (4 bytes a token: 100 MB of English text is about 25M tokens, 100 MB of memory).

Masking follows Google's create_pretraining_data.py: in every sequence, whole words (a token and
the `##` tokens after it; a Chinese character is a word by itself, so Chinese is masked
character by character) are taken in random order until 15% of the sequence's tokens are
chosen, skipping a word that would overshoot; of the chosen tokens 80% become [MASK], 10% a
random token and 10% stay as they are, and the loss is on the chosen ones only. [CLS], [SEP]
and [PAD] are never chosen. Every draw comes from the batch's generator, so a batch is a
function of (seed, step), which is what makes `--resume` exact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from goldmine.data.readers import collect_files, dataset_split, iter_texts, total_bytes
from goldmine.errors import GoldmineError
from goldmine.files import read_json, write_json, write_text

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREFIX = "##"                       # a WordPiece token that continues the word before it
VAL_FRACTION = 0.1
DEFAULT_VOCAB = 8192
MASK_PROB = 0.15
PIECE_BYTES = 64 * 1024             # text handed to the tokenizer at a time
BATCH_BYTES = 1 << 20               # text per encode_batch call (parallel in Rust)
META = "mlm.json"                   # what the tokenizer in a work directory was made from


# ---------------------------------------------------------------------------------- tokenizer
class MLMTokenizer:
    """A `tokenizers.Tokenizer` with BERT's special tokens, for MLM: ids, the masks of special
    and continuation tokens, and saving in the form transformers loads."""

    def __init__(self, tok: Any, path: Path | None = None):
        where = f"{path}: " if path else ""
        ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            spec = json.loads(tok.to_str())
            kind = (spec.get("model") or {}).get("type", "unknown")
            byte_level = (spec.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
            what = "a byte-level BPE tokenizer (a GPT's)" if byte_level else f"a {kind} tokenizer"
            raise GoldmineError(
                f"{where}{what} without {', '.join(missing)}: masked-language modelling needs a "
                "BERT-style vocabulary with [PAD] [UNK] [CLS] [SEP] [MASK]; leave out --tokenizer "
                "to train a WordPiece one on --data, or give a BERT tokenizer (minilm, a Hugging "
                "Face BERT directory)")
        tok.no_padding()  # a Hugging Face tokenizer.json may pad or truncate (MiniLM's: to 128)
        tok.no_truncation()
        tk = _tokenizers()
        tok.post_processor = tk.processors.TemplateProcessing(  # how fine-tuning frames a text
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
        self.tok, self.path = tok, path
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids.values()
        spec = json.loads(tok.to_str())
        model = spec.get("model") or {}
        self.wordpiece = model.get("type") == "WordPiece"
        self.prefix = model.get("continuing_subword_prefix") or PREFIX
        norm = spec.get("normalizer") or {}
        bert_norm = norm.get("type") == "BertNormalizer"
        self.lowercase = bool(norm.get("lowercase")) if bert_norm else False
        self.chinese_chars = bool(norm.get("handle_chinese_chars")) if bert_norm else False

    @classmethod
    def load(cls, path: Path) -> MLMTokenizer:
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GoldmineError(f"{path}: cannot read the tokenizer ({e})") from None
        try:
            tok = _tokenizers().Tokenizer.from_str(text)
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise GoldmineError(f"{path}: not a tokenizer.json the tokenizers library can read "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return cls(tok, path)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> list[int]:
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id]

    def tokens(self) -> list[str]:
        """The vocabulary in id order."""
        vocab = self.tok.get_vocab(with_added_tokens=True)
        out = [""] * self.vocab_size
        for t, i in vocab.items():
            out[i] = t
        return out

    def continuation(self) -> torch.Tensor:
        """(V,) bool: True for the tokens that continue a word (`##ing`)."""
        return torch.tensor([t.startswith(self.prefix) and t != self.prefix
                             for t in self.tokens()], dtype=torch.bool)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def save(self, directory: Path) -> Path:
        """tokenizer.json only (what checkpoints carry)."""
        return write_text(Path(directory) / "tokenizer.json", self.tok.to_str(pretty=True))

    def save_hf(self, directory: Path, model_max_length: int) -> None:
        """tokenizer.json, vocab.txt, tokenizer_config.json and special_tokens_map.json:
        what `AutoTokenizer.from_pretrained(directory)` reads as a BERT tokenizer."""
        d = Path(directory)
        self.save(d)
        if self.wordpiece:
            write_text(d / "vocab.txt", "".join(t + "\n" for t in self.tokens()))
        names = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"),
                         SPECIAL_TOKENS))
        write_json(d / "special_tokens_map.json", names)
        write_json(d / "tokenizer_config.json", {
            "tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
            "tokenize_chinese_chars": self.chinese_chars, "strip_accents": None,
            "model_max_length": model_max_length, "clean_up_tokenization_spaces": True,
            **names})


def _tokenizers():
    import tokenizers

    return tokenizers


def train_wordpiece(texts: Iterator[str], vocab_size: int = DEFAULT_VOCAB,
                    min_frequency: int = 2) -> MLMTokenizer:
    """BERT's uncased WordPiece tokenizer trained from an iterator of texts."""
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.WordPiece(unk_token="[UNK]", continuing_subword_prefix=PREFIX))
    tok.normalizer = tk.normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=None, lowercase=True)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tok.decoder = tk.decoders.WordPiece(prefix=PREFIX)
    trainer = tk.trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                           special_tokens=SPECIAL_TOKENS,
                                           continuing_subword_prefix=PREFIX, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return MLMTokenizer(tok)


def resolve_mlm_tokenizer(ref: str) -> Path:
    """tokenizer.json of `ref`: minilm, a tokenizer.json, a directory holding one (a Hugging Face
    BERT directory), or a run: an `--objective mlm` run's hf/ tokenizer."""
    from goldmine.hf import MINILM, minilm_path
    from goldmine.tokenizer import resolve_tokenizer_path

    if ref == MINILM:
        return minilm_path() / "tokenizer.json"
    p = Path(ref)
    if p.is_dir() and (p / "hf" / "tokenizer.json").is_file():
        return p / "hf" / "tokenizer.json"
    if p.is_dir() and (p / "vocab.txt").is_file() and not (p / "tokenizer.json").is_file():
        raise GoldmineError(f"{p}: a vocab.txt but no tokenizer.json; save the tokenizer with "
                            "a fast (tokenizers) backend first: AutoTokenizer.from_pretrained("
                            "dir).save_pretrained(dir)")
    return resolve_tokenizer_path(ref)


def mlm_tokenizer(files: list[Path], ref: str | None, work: Path, vocab_size: int | None,
                  text_field: str = "text", progress: bool = True) -> tuple[MLMTokenizer, str]:
    """(the tokenizer, where it came from): `ref` loaded, or a WordPiece vocabulary trained on
    `files`. Either way it is written to `work`/tokenizer.json (what checkpoints copy); a
    trained one is reused from there when `work` already holds one made from the same
    inputs and options (a resumed run, or the other ranks of a torchrun job)."""
    work.mkdir(parents=True, exist_ok=True)
    if ref is not None:
        path = resolve_mlm_tokenizer(ref)
        tok = MLMTokenizer.load(path)
        tok.save(work)
        return tok, str(path)
    want = {"inputs": [str(f.resolve()) for f in files], "input_bytes": total_bytes(files),
            "vocab_size": vocab_size or DEFAULT_VOCAB, "text_field": text_field}
    try:
        if read_json(work / META, META) == want and (work / "tokenizer.json").is_file():
            return MLMTokenizer.load(work / "tokenizer.json"), "trained on --data"
    except GoldmineError:
        pass  # none yet, or unreadable: train
    with _bar(progress, "training WordPiece", want["input_bytes"]) as advance:
        def texts() -> Iterator[str]:
            for piece in iter_texts(files, text_field, chunk_bytes=PIECE_BYTES):
                advance(piece.nbytes)
                yield piece.text

        tok = train_wordpiece(texts(), want["vocab_size"])
    if tok.vocab_size <= len(SPECIAL_TOKENS):
        raise GoldmineError(f"{', '.join(map(str, files[:3]))}: no text to train a tokenizer on "
                            "(the documents are empty)")
    tok.save(work)
    write_json(work / META, want)
    return tok, "trained on --data"


# ------------------------------------------------------------------------------------- corpus
def encode_corpus(files: list[Path], tok: MLMTokenizer, text_field: str = "text",
                  progress: bool = True) -> dict[str, np.ndarray]:
    """{"train": ids, "val": ids}: every document's tokens, [SEP] after each, as int32 arrays.
    A prepared dataset's val file is the val split; otherwise the last VAL_FRACTION of the
    tokens are."""
    fixed = {f: dataset_split(f) for f in files}
    if "val" not in fixed.values():
        fixed = {}
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    sep = np.asarray([tok.sep_id], dtype=np.int32)

    def flush(batch: list) -> None:
        for piece, ids in zip(batch, tok.encode_batch([p.text for p in batch])):
            where = "val" if fixed.get(piece.path) == "val" else "train"
            parts[where].append(np.asarray(ids, dtype=np.int32))
            if piece.doc_end:
                parts[where].append(sep)

    with _bar(progress, "tokenizing", total_bytes(files)) as advance:
        batch, size = [], 0
        for piece in iter_texts(files, text_field, chunk_bytes=PIECE_BYTES):
            batch.append(piece)
            size += piece.nbytes
            advance(piece.nbytes)
            if size >= BATCH_BYTES:
                flush(batch)
                batch, size = [], 0
        if batch:
            flush(batch)
    splits = {k: np.concatenate(v) if v else np.zeros(0, np.int32) for k, v in parts.items()}
    if not fixed:
        cut = len(splits["train"]) - int(round(len(splits["train"]) * VAL_FRACTION))
        splits = {"train": splits["train"][:cut], "val": splits["train"][cut:]}
    if not (splits["train"] != tok.sep_id).any():
        raise GoldmineError(f"{', '.join(map(str, files[:3]))}: no text to train on (the "
                            "documents are empty)")
    return splits


class MLMCorpus:
    """Train and val token ids in memory; batches of masked sequences drawn from them."""

    def __init__(self, splits: dict[str, np.ndarray], tok: MLMTokenizer,
                 mask_prob: float = MASK_PROB, whole_word: bool = True, source: str = "",
                 tokenizer_source: str = ""):
        if whole_word and not tok.wordpiece:
            raise GoldmineError(f"{tok.path or 'tokenizer'}: whole-word masking needs a "
                                f"WordPiece tokenizer (words continue with {PREFIX}); give "
                                "--whole-word false to mask single tokens")
        self.splits, self.tok, self.source = splits, tok, source
        self.tokenizer_source = tokenizer_source  # where the tokenizer came from, for the log
        self.mask_prob, self.whole_word = mask_prob, whole_word
        self.special = torch.zeros(tok.vocab_size, dtype=torch.bool)
        self.special[tok.special_ids] = True
        self.continuation = tok.continuation() if whole_word else None
        self.replacements = (~self.special).nonzero().squeeze(1)  # random tokens: no specials

    def tokens(self, split: str) -> int:
        return len(self.splits[split])

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), (B, T) each: random windows of T - 2 tokens framed [CLS] ... [SEP],
        masked; targets hold the original ids where a prediction is due, -100 elsewhere."""
        stream = self.splits[split]
        n = block_size - 2
        if n < 1:
            raise GoldmineError(f"block_size: {block_size} leaves no room for text between "
                                "[CLS] and [SEP]")
        windows = len(stream) - n + 1
        if windows < 1:
            raise GoldmineError(
                f"{self.source or 'corpus'}: the {split} split has {len(stream):,} tokens, fewer "
                f"than a sequence's {n:,} (block_size - 2); use a smaller --block-size or more data")
        offsets = torch.randint(windows, (batch_size,), generator=generator)
        rows = torch.from_numpy(np.stack([stream[o:o + n] for o in offsets.tolist()])).long()
        ids = torch.cat([torch.full((batch_size, 1), self.tok.cls_id), rows,
                         torch.full((batch_size, 1), self.tok.sep_id)], dim=1)   # (B, T)
        return mask_tokens(ids, self.special, self.tok.mask_id, self.replacements,
                           self.mask_prob, generator, self.continuation)


# ------------------------------------------------------------------------------------ masking
def mask_tokens(ids: torch.Tensor, special: torch.Tensor, mask_id: int,
                replacements: torch.Tensor, mask_prob: float = MASK_PROB,
                generator: torch.Generator | None = None,
                continuation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of a batch of token ids (B, T) -> (inputs, targets), (B, T) each.

    special: (V,) bool, tokens never chosen ([CLS] [SEP] [PAD] ...); continuation: (V,) bool,
    tokens that continue the word before them (None: every token is a word of its own);
    replacements: the ids a randomly replaced token is drawn from.
    """
    B, T = ids.shape
    maskable = ~special[ids]                                          # (B, T)
    starts = maskable.clone()                                         # where a word begins
    if continuation is not None:
        after_word = torch.zeros_like(maskable)
        after_word[:, 1:] = maskable[:, :-1]
        starts &= ~(continuation[ids] & after_word)
    word = (starts.long().cumsum(1) - 1).clamp(min=0)                 # (B, T) word index in its row
    selected = torch.zeros_like(maskable)
    for b in range(B):
        n_words = int(starts[b].sum())
        if n_words == 0:
            continue
        lengths = torch.bincount(word[b][maskable[b]], minlength=n_words).tolist()
        budget = max(1, round(int(maskable[b].sum()) * mask_prob))
        chosen = torch.zeros(n_words, dtype=torch.bool)
        total = 0
        order = torch.randperm(n_words, generator=generator).tolist()
        for w in order:  # words in random order until the budget is met; skip one that overshoots
            if total + lengths[w] > budget:
                continue
            chosen[w] = True
            total += lengths[w]
            if total == budget:
                break
        if total == 0:  # every word is longer than the budget: take the first drawn anyway
            chosen[order[0]] = True
        selected[b] = maskable[b] & chosen[word[b]]
    r = torch.rand(B, T, generator=generator)
    inputs = ids.clone()
    inputs[selected & (r < 0.8)] = mask_id                            # 80%: [MASK]
    swap = selected & (r >= 0.8) & (r < 0.9)                          # 10%: a random token
    picks = torch.randint(len(replacements), (int(swap.sum()),), generator=generator)
    inputs[swap] = replacements[picks]
    targets = torch.where(selected, ids, torch.full_like(ids, -100))  # 10%: kept as they are
    return inputs, targets


# ------------------------------------------------------------------------------------ helpers
class _bar:
    """A progress bar over input bytes (or nothing); the block gets a function to advance it."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from goldmine.progress import human_bytes, progress_bar

        self.bar = progress_bar()
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total, stats="")
        t0, done = time.time(), [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = done[0] / max(time.time() - t0, 1e-9)
            self.bar.update(task, advance=n, stats=f"{human_bytes(rate)}/s")

        return advance

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def load_mlm_data(data: str | Path, tokenizer: str | None, work: Path, *,
                  vocab_size: int | None = None, mask_prob: float | None = None,
                  whole_word: bool | None = None, progress: bool = True) -> MLMCorpus:
    """The corpus of `pretrain --objective mlm`: `data` (text files, folders or a prepared
    dataset) tokenized with `tokenizer` (or a WordPiece vocabulary trained on it) into memory."""
    from goldmine.data.shards import is_shards_dir

    p = Path(data)
    if is_shards_dir(p):
        raise GoldmineError(f"{p}: token shards hold a GPT tokenizer's ids (no [MASK] token); "
                            "--objective mlm reads text: give the .txt/.jsonl files or folder, "
                            "or a prepared dataset")
    if not p.exists():
        raise GoldmineError(f"{p}: data not found (.txt/.jsonl text, a folder of it or a "
                            "prepared dataset)")
    files = collect_files([p])
    tok, source = mlm_tokenizer(files, tokenizer, work, vocab_size, progress=progress)
    splits = encode_corpus(files, tok, progress=progress)
    return MLMCorpus(splits, tok, MASK_PROB if mask_prob is None else mask_prob,
                     True if whole_word is None else whole_word, source=str(p),
                     tokenizer_source=source)
