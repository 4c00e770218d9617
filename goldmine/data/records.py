"""What one input row becomes in `goldmine data prepare`: extraction, cleaning, checks, hashes.

    Extractor(cfg)(row)        reader Row -> record of the kind (text / text+label / messages)
    Processor(cfg)(records)    records -> cleaned, PII-scrubbed, filtered, hashed (in workers)

A row that cannot become part of the dataset raises `Rejected(reason, detail)`: `reason` is the
category the report counts, `detail` the specifics written to rejected.jsonl. A problem that
would reject every row of a file (a missing column) is a GoldmineError at the file's first row
instead, naming the file and the columns it has.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from goldmine.config import PrepareConfig
from goldmine.data import splits as S
from goldmine.data.clean import clean_text, normalize_label
from goldmine.errors import GoldmineError

PROMPT_COLUMNS = ("prompt", "instruction", "question", "input", "query")
RESPONSE_COLUMNS = ("response", "output", "answer", "completion")
ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant",
              "gpt": "assistant", "bot": "assistant", "model": "assistant", "chatgpt": "assistant"}


class Rejected(Exception):
    """A row-level rejection: `reason` is the category counted in the report, `detail` the
    specifics written to rejected.jsonl."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------- extraction
def reader_reason(error: str) -> str:
    """A reader's error message -> the category it is counted under."""
    e = error.lower()
    for needle, reason in (("empty line", "empty line"), ("expected a json", "not an object"),
                           ("not valid json", "malformed JSON"), ("not valid csv", "malformed CSV"),
                           ("fields, header has", "wrong number of fields"),
                           ("bytes not valid", "undecodable bytes")):
        if needle in e:
            return reason
    return error.split("(")[0].strip() or "unreadable row"


class Extractor:
    """Turns a reader Row's fields into the record of the dataset kind (parent process).

    Column problems that would reject every row of a file (a missing column) are errors naming
    the file and the fields it has, raised at its first row."""

    def __init__(self, cfg: PrepareConfig):
        self.cfg = cfg
        self.checked: dict[Path, dict[str, Any]] = {}

    def _text_field(self, path: Path) -> str:
        return "text" if path.suffix.lower() in (".txt", ".md") else self.cfg.text_column

    def _check_file(self, row) -> dict[str, Any]:
        """Per-file column choices, decided (and checked) at the file's first parsed row."""
        cfg, path, names = self.cfg, row.path, list(row.fields)
        shown = ", ".join(map(repr, names)) or "none"

        def need(column: str, option: str) -> None:
            if column not in row.fields:
                raise GoldmineError(f"{row.where}: no column {column!r} (columns: {shown}); "
                                    f"choose one with {option}")

        plan: dict[str, Any] = {}
        if cfg.kind in ("text", "classify"):
            need(self._text_field(path), "--text-column")
        if cfg.kind == "classify" and not cfg.label_from_folder:
            need(cfg.label_column, "--label-column")
        if cfg.split_column:
            need(cfg.split_column, "--split-column")
        if cfg.kind == "chat":
            if cfg.messages_column in row.fields and not (cfg.prompt_column or cfg.response_column):
                plan["messages"] = cfg.messages_column
            else:
                prompt = cfg.prompt_column or next((c for c in PROMPT_COLUMNS if c in row.fields), None)
                response = cfg.response_column or next(
                    (c for c in RESPONSE_COLUMNS if c in row.fields), None)
                if prompt is None or response is None:
                    raise GoldmineError(
                        f"{row.where}: no conversation found: no {cfg.messages_column!r} field and no "
                        f"prompt/response columns (columns: {shown}); name them with "
                        "--messages-column or --prompt-column/--response-column")
                need(prompt, "--prompt-column")
                need(response, "--response-column")
                plan["prompt"], plan["response"] = prompt, response
        return plan

    def __call__(self, row) -> dict[str, Any]:
        cfg = self.cfg
        if row.path not in self.checked:
            self.checked[row.path] = self._check_file(row)
        plan = self.checked[row.path]
        f = row.fields
        rec: dict[str, Any] = {}
        if cfg.kind == "chat":
            if "messages" in plan and f.get(plan["messages"]) is None:
                raise Rejected("missing messages", f"field {plan['messages']!r} is missing or null")
            rec["messages"] = (_messages(f[plan["messages"]]) if "messages" in plan
                               else _pair(f, plan["prompt"], plan["response"]))
            if cfg.system_prompt and rec["messages"][0]["role"] != "system":
                rec["messages"].insert(0, {"role": "system", "content": cfg.system_prompt})
        else:
            rec["text"] = _string(f, self._text_field(row.path), "text")
        if cfg.kind == "classify":
            if cfg.label_from_folder:
                rec["label"] = row.path.parent.name
            else:
                label = f.get(cfg.label_column)
                if label is None or (isinstance(label, str) and not label.strip()):
                    raise Rejected("missing label", f"field {cfg.label_column!r} is empty")
                if isinstance(label, (dict, list)):
                    raise Rejected("bad label", f"field {cfg.label_column!r} is a "
                                   f"{type(label).__name__}")
                rec["label"] = label
        if cfg.split_column:
            raw = f.get(cfg.split_column)
            code = S.SPLIT_ALIASES.get(str(raw).strip().lower()) if raw is not None else None
            if code is None:
                raise Rejected("unknown split value", f"{cfg.split_column}={raw!r} (expected "
                               "train, val or test)")
            rec["split"] = code
        return rec


def _string(fields: dict, name: str, what: str) -> str:
    value = fields.get(name)
    if value is None:
        raise Rejected(f"missing {what}", f"field {name!r} is missing or null")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise Rejected(f"bad {what}", f"field {name!r} is a {type(value).__name__}, not text")
    return value


def _pair(fields: dict, prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": _string(fields, prompt, "prompt")},
            {"role": "assistant", "content": _string(fields, response, "response")}]


def _messages(value: Any) -> list[dict[str, str]]:
    """OpenAI {role, content} or ShareGPT {from, value} lists (or such a list as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise Rejected("bad messages", f"messages text is not valid JSON ({e.msg})") from None
    if not isinstance(value, list) or not value:
        raise Rejected("bad messages", "messages must be a non-empty list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise Rejected("bad messages", f"message {i} is a {type(m).__name__}, not an object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        norm = ROLE_NAMES.get(str(role).strip().lower()) if role is not None else None
        if norm is None:
            raise Rejected("bad messages", f"message {i} has role {role!r} (expected system, "
                           "user or assistant)")
        if not isinstance(content, str):
            raise Rejected("bad messages", f"message {i} has no text content")
        out.append({"role": norm, "content": content})
    return out


# ---------------------------------------------------------------------------------- processing
class Processor:
    """Cleaning, PII, filters, labels and hashing for a batch of records (runs in workers)."""

    def __init__(self, cfg: PrepareConfig):
        from goldmine.data.dedup import MinHasher

        self.cfg = cfg
        self.hasher = (MinHasher(num_perm=cfg.num_perm, shingle_size=cfg.shingle_size, seed=0)
                       if cfg.dedup == "near" else None)
        self.label_map = load_label_map(cfg.label_map) if cfg.label_map else None
        self.allowed = set(cfg.labels) if cfg.labels else None
        self.tokenizer = None
        if cfg.tokenizer:
            from goldmine.tokenizer import Tokenizer

            self.tokenizer = Tokenizer.load(cfg.tokenizer)

    def _text(self, text: str, pii: Counter) -> str:
        text = clean_text(text, normalize=self.cfg.normalize, html_tags=self.cfg.strip_html)
        if self.cfg.pii and text:
            from goldmine.data.pii import scrub_pii

            text, found = scrub_pii(text)
            pii.update(found)
        return text

    def _label(self, label: Any) -> str:
        name = normalize_label(label, lowercase=self.cfg.lowercase_labels)
        if self.label_map is not None and name in self.label_map:
            mapped = self.label_map[name]
            if mapped is None:
                raise Rejected("label dropped by --label-map", f"label {name!r} maps to null")
            name = mapped
        if not name:
            raise Rejected("missing label", "label is empty after normalisation")
        if self.allowed is not None and name not in self.allowed:
            raise Rejected("label not in --labels", f"label {name!r}")
        return name

    def _check_length(self, text: str) -> int:
        cfg, n = self.cfg, len(text)
        if n == 0:
            raise Rejected("empty after cleaning")
        if n < cfg.min_chars:
            raise Rejected("too short", f"{n} characters < --min-chars {cfg.min_chars}")
        if cfg.max_chars is not None and n > cfg.max_chars:
            raise Rejected("too long", f"{n} characters > --max-chars {cfg.max_chars}")
        if self.tokenizer is not None:
            t = len(self.tokenizer.encode(text))
            if cfg.min_tokens is not None and t < cfg.min_tokens:
                raise Rejected("too few tokens", f"{t} tokens < --min-tokens {cfg.min_tokens}")
            if cfg.max_tokens is not None and t > cfg.max_tokens:
                raise Rejected("too many tokens", f"{t} tokens > --max-tokens {cfg.max_tokens}")
        return n

    def one(self, rec: dict[str, Any], pii: Counter) -> tuple[dict[str, Any], str, int]:
        """(cleaned record, the text that is hashed, its length) or raises Rejected."""
        found: Counter = Counter()
        out = dict(rec)
        if "messages" in rec:
            msgs = [{"role": m["role"], "content": self._text(m["content"], found)}
                    for m in rec["messages"]]
            _check_conversation(msgs)
            out["messages"] = msgs
            key_text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
            length = self._check_length(key_text)
        else:
            out["text"] = key_text = self._text(rec["text"], found)
            length = self._check_length(key_text)
        if "label" in rec:
            out["label"] = self._label(rec["label"])
        pii.update(found)  # only rows that are kept count towards the PII report
        return out, key_text, length

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        from goldmine.data.dedup import exact_key

        results: list[tuple] = []
        texts: list[str] = []
        pii: Counter = Counter()
        for rec in batch:
            try:
                out, key_text, length = self.one(rec, pii)
            except Rejected as r:
                results.append(("reject", r.reason, r.detail))
                continue
            results.append(("keep", out, exact_key(key_text), length))
            texts.append(key_text)
        sigs = self.hasher.signatures(texts) if self.hasher is not None and texts else None
        return {"results": results, "signatures": sigs, "pii": pii}


def _check_conversation(msgs: list[dict[str, str]]) -> None:
    """A conversation starts with the user (after an optional system message), alternates,
    and ends with the assistant; no message is empty."""
    empty = next((m["role"] for m in msgs if not m["content"]), None)
    if empty:
        raise Rejected("empty message", f"a {empty} message is empty after cleaning")
    roles = [m["role"] for m in msgs]
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body:
        raise Rejected("bad messages", "a system message appears after the first message")
    if not body or body[0] != "user":
        raise Rejected("bad messages", "the conversation does not start with a user message")
    if any(a == b for a, b in zip(body, body[1:])):
        raise Rejected("bad messages", "user and assistant messages do not alternate")
    if body[-1] != "assistant":
        raise Rejected("no assistant reply", "the last message is not from the assistant")


def load_label_map(path: str) -> dict[str, str | None]:
    """A YAML (or JSON) mapping raw label -> name; keys are normalised like labels, null drops."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError:
        raise GoldmineError(f"{p}: label map not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise GoldmineError(f"{p}: not a YAML/JSON mapping ({e})") from None
    if not isinstance(data, dict) or not data:
        raise GoldmineError(f"{p}: expected a mapping of raw label: name, e.g. `0: negative`")
    return {normalize_label(k): (None if v is None else normalize_label(v, lowercase=False))
            for k, v in data.items()}


_WORKER: Processor | None = None


def init_worker(cfg_dict: dict[str, Any]) -> None:
    global _WORKER
    _WORKER = Processor(PrepareConfig(**cfg_dict))


def process_batch(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker side of `--workers`: the Processor that `init_worker` built."""
    assert _WORKER is not None
    return _WORKER(batch)
