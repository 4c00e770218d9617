"""`goldmine chat`: a conversation in the terminal, answers streamed as they are generated.

Against a run or directory (loaded here, through the same engine and chat template as the
server) or against a running server (`--url`: any OpenAI-compatible one, streamed over SSE).

    you> Where is my order?
    assistant> It left the warehouse today ...            (12 tokens, 85 tok/s)

/reset starts a new conversation, /exit or Ctrl-D ends it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from goldmine.config import ChatConfig
from goldmine.errors import GoldmineError


class LocalChat:
    """A chat model loaded in this process, behind its own engine."""

    def __init__(self, cfg: ChatConfig):
        from goldmine.runtime import resolve_device
        from goldmine.serve.engine import EngineConfig
        from goldmine.serve.models import ServedLM, load_served

        ref = cfg.model or _latest_chat_run()
        m = load_served("chat", ref, resolve_device(cfg.device), EngineConfig(max_batch=1))
        if not isinstance(m, ServedLM):
            raise GoldmineError(f"{ref}: a {m.kind} model; `goldmine chat` needs a GPT")
        self.model, self.cfg = m, cfg
        self.name = str(m.path)
        self.warning = None if m.kind == "chat" else (
            f"{ref}: not tuned for chat (no chat template recorded); using goldmine's template")
        m.engine.start()

    def answer(self, messages: list[dict[str, str]], stats: dict) -> Iterator[str]:
        from goldmine.serve.app import TextStream
        from goldmine.serve.engine import Sampling

        m = self.model
        prompt = m.chat_prompt(messages)
        room = m.context - len(prompt)
        if room < 1:
            raise GoldmineError(f"the conversation is {len(prompt)} tokens, the model's context "
                                f"{m.context}: /reset to start over")
        req = m.engine.submit(prompt, Sampling(max_tokens=min(self.cfg.max_tokens, room),
                                               temperature=self.cfg.temperature,
                                               top_p=self.cfg.top_p, seed=self.cfg.seed,
                                               stop_ids=m.chat_stop_ids()))
        text = TextStream(m, [])
        try:
            for tok in req:
                delta = text.feed([tok])
                if delta:
                    yield delta
            if rest := text.flush():
                yield rest
        finally:
            req.cancel()
        stats["tokens"] = len(req.tokens)

    def close(self) -> None:
        self.model.engine.stop()


class RemoteChat:
    """A model behind an OpenAI-compatible server, streamed over server-sent events."""

    def __init__(self, cfg: ChatConfig):
        import httpx

        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        if not self.base.endswith("/v1"):
            self.base += "/v1"
        key = cfg.api_key or os.environ.get("GOLDMINE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.client = httpx.Client(headers={"Authorization": f"Bearer {key}"} if key else {},
                                   timeout=httpx.Timeout(10.0, read=300.0))
        self.warning = None
        try:
            models = self._json(self.client.get(self.base + "/models"))["data"]
        except httpx.HTTPError as e:
            raise GoldmineError(f"{cfg.url}: cannot reach the server ({e})") from None
        chats = [m["id"] for m in models if m.get("kind", "chat") in ("chat", "completion")]
        if cfg.model:
            if cfg.model not in [m["id"] for m in models]:
                raise GoldmineError(f"{cfg.url} serves no model {cfg.model!r}; it serves "
                                    f"{', '.join(m['id'] for m in models) or 'nothing'}")
            self.name = cfg.model
        elif chats:
            self.name = chats[0]
        else:
            raise GoldmineError(f"{cfg.url} serves no chat model")

    @staticmethod
    def _json(r) -> dict:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code >= 400:
            msg = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            raise GoldmineError(f"server answered {r.status_code}: {msg or r.text[:200]}")
        return body

    def answer(self, messages: list[dict[str, str]], stats: dict) -> Iterator[str]:
        body = {"model": self.name, "messages": messages, "stream": True,
                "max_tokens": self.cfg.max_tokens, "temperature": self.cfg.temperature,
                "top_p": self.cfg.top_p, "stream_options": {"include_usage": True}}
        if self.cfg.seed is not None:
            body["seed"] = self.cfg.seed
        with self.client.stream("POST", self.base + "/chat/completions", json=body) as r:
            if r.status_code >= 400:
                r.read()
                self._json(r)
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    stats["tokens"] = chunk["usage"].get("completion_tokens")
                for choice in chunk.get("choices") or []:
                    if delta := (choice.get("delta") or {}).get("content"):
                        yield delta

    def close(self) -> None:
        self.client.close()


def _latest_chat_run() -> str:
    from goldmine.registry import latest_completed

    run = latest_completed("finetune sft", "pretrain")
    if run is None:
        raise GoldmineError("model: give --model (a `finetune sft` run) or --url of a server; "
                            "no completed chat or pretrain run is recorded")
    return run["run_dir"]


def chat(cfg: ChatConfig | None = None, read: Callable[[str], str] = input,
         write: Callable[[str], Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the conversation loop until /exit or end of input; returns {"turns", "model"}."""
    cfg = (cfg or ChatConfig()).update(overrides)
    cfg.validate()
    out = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    session = RemoteChat(cfg) if cfg.url else LocalChat(cfg)
    if session.warning:
        out(f"note: {session.warning}\n")
    out(f"chatting with {session.name} — /reset starts over, /exit ends\n")
    start = [{"role": "system", "content": cfg.system}] if cfg.system else []
    messages, turns = list(start), 0
    try:
        while True:
            try:
                line = read("you> ")
            except (EOFError, KeyboardInterrupt):
                out("\n")
                break
            line = line.strip()
            if not line:
                continue
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                messages = list(start)
                out("(new conversation)\n")
                continue
            messages.append({"role": "user", "content": line})
            out("assistant> ")
            stats, parts, t0 = {}, [], time.perf_counter()
            try:
                for delta in session.answer(messages, stats):
                    parts.append(delta)
                    out(delta)
            except KeyboardInterrupt:
                out(" [stopped]")
            seconds = time.perf_counter() - t0
            n = stats.get("tokens")
            rate = f", {n / seconds:.0f} tok/s" if n and seconds > 0 else ""
            out(f"\n  ({n if n is not None else '?'} tokens{rate})\n")
            messages.append({"role": "assistant", "content": "".join(parts)})
            turns += 1
    finally:
        session.close()
    return {"turns": turns, "model": session.name}
