"""Sampling: prompt -> text, with a KV cache.

    logits -> repetition penalty -> temperature -> top-k -> top-p -> sample (or argmax)

`sample_tokens` works on token ids and yields one new token per sequence per step; `stream`
turns that into text deltas that never cut a UTF-8 character in half and never show a stop
string; `generate_text` is the `goldmine generate` command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from goldmine.config import GenerateConfig
from goldmine.errors import GoldmineError


@dataclass
class SamplingParams:
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = 0.95
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def from_config(cls, cfg: GenerateConfig) -> SamplingParams:
        return cls(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                   top_k=cfg.top_k, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                   stop=tuple(cfg.stop), seed=cfg.seed)


def process_logits(logits: torch.Tensor, seen: torch.Tensor | None, p: SamplingParams) -> torch.Tensor:
    """logits: (B, V) for the next token; seen: (B, S) ids already in each sequence.

    Returns logits with penalties, temperature and the top-k/top-p filters applied (filtered
    tokens get -inf). With temperature 0 only the penalty is applied (the caller takes argmax).
    """
    logits = logits.float()
    if p.repetition_penalty != 1.0 and seen is not None and seen.numel():
        prev = logits.gather(1, seen)
        prev = torch.where(prev > 0, prev / p.repetition_penalty, prev * p.repetition_penalty)
        logits = logits.scatter(1, seen, prev)
    if p.temperature == 0:
        return logits
    logits = logits / p.temperature
    if p.top_k is not None and p.top_k < logits.size(-1):
        kth = torch.topk(logits, p.top_k, dim=-1).values[:, -1:]          # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p is not None and p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= p.top_p  # mass before this token already >= p
        drop[:, 0] = False                                  # always keep the most likely token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def sample_tokens(model, prompt_ids: list[int], p: SamplingParams, num_samples: int = 1,
                  use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield the next token of each of `num_samples` sequences, (num_samples,), step by step.

    The caller decides when to stop (EOS, stop strings); at most p.max_new_tokens are yielded.
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(p.seed if p.seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    ids = torch.tensor([prompt_ids] * num_samples, dtype=torch.long, device=device)   # (N, P)
    block = model.config.block_size
    cache = model.new_cache(num_samples, block) if use_cache else None
    new = ids
    for _ in range(p.max_new_tokens):
        if ids.size(1) >= block:
            return
        logits = model(new if use_cache else ids, cache=cache)[:, -1]                  # (N, V)
        logits = process_logits(logits, ids if p.repetition_penalty != 1.0 else None, p)
        if p.temperature == 0:
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(1)
        yield nxt
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        new = nxt[:, None]


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters might still become a stop string (or a split character)."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence from byte-level tokens
        hold = max(hold, len(text) - len(text.rstrip("\ufffd")))
    return hold


def stream(model, tokenizer, prompt: str | list[int], p: SamplingParams, use_cache: bool = True,
           add_bos: bool | None = None, stats: dict | None = None,
           stop_ids: set[int] | None = None) -> Iterator[str]:
    """Text deltas of one sample; ends at EOS (or any of `stop_ids`), a stop string or
    max_new_tokens.

    `prompt`: text, or token ids as they are (a chat prompt from goldmine.chat.prompt_ids).
    `add_bos` (default: as the model's training data did) starts a text prompt with BOS.
    `stats`, if given, receives prompt_tokens and new_tokens.
    """
    if add_bos is None:
        add_bos = getattr(tokenizer, "add_bos", True)
    prompt_ids = list(prompt) if isinstance(prompt, list) else tokenizer.encode(prompt, bos=add_bos)
    stop_ids = stop_ids or {tokenizer.eos_id}
    if len(prompt_ids) >= model.config.block_size:
        raise GoldmineError(f"prompt is {len(prompt_ids)} tokens; the model's context is "
                            f"{model.config.block_size} tokens: shorten the prompt")
    stats = stats if stats is not None else {}
    stats.update(prompt_tokens=len(prompt_ids), new_tokens=0)
    out: list[int] = []
    emitted = 0
    text = ""
    for tok in sample_tokens(model, prompt_ids, p, 1, use_cache):
        t = int(tok[0])
        stats["new_tokens"] += 1
        if t in stop_ids:
            break
        out.append(t)
        text = tokenizer.decode(out)
        cut = min((text.find(s) for s in p.stop if s in text), default=-1)
        if cut >= 0:
            if cut > emitted:
                yield text[emitted:cut]
            return
        safe = len(text) - _held_back(text, p.stop)
        if safe > emitted:
            yield text[emitted:safe]
            emitted = safe
    if len(text) > emitted:
        yield text[emitted:]


def generate(model, tokenizer, prompt: str, p: SamplingParams | None = None, **kw) -> str:
    """The whole completion of one sample as a string."""
    return "".join(stream(model, tokenizer, prompt, p or SamplingParams(**kw)))


def answer(model, tokenizer, messages: list[dict[str, str]], p: SamplingParams | None = None,
           stats: dict | None = None, **kw) -> str:
    """The assistant's next message in a conversation, through the model's chat template."""
    from goldmine import chat

    return "".join(stream(model, tokenizer, chat.prompt_ids(tokenizer, messages),
                          p or SamplingParams(**kw), stats=stats,
                          stop_ids=chat.stop_ids(tokenizer)))


def generate_text(cfg: GenerateConfig | None = None, **overrides) -> dict[str, Any]:
    """`goldmine generate`: load a model, sample num_samples completions, record the run.

    `on_text` (in overrides) is called with every text delta as it is produced; `on_start` with
    {"chat": whether the prompt went through the chat template} before the first.
    """
    from goldmine.checkpoint import load_model
    from goldmine.progress import info
    from goldmine.registry import start_run
    from goldmine.runtime import resolve_device, tune_cpu_allocator

    on_text = overrides.pop("on_text", None)
    on_start = overrides.pop("on_start", None)  # called with {"chat": bool} before sampling
    cfg = (cfg or GenerateConfig()).update(overrides)
    cfg.validate()
    if not cfg.model:
        raise GoldmineError("model: give --model (a run id, run directory or checkpoint directory)")
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    model, tokenizer, ckpt = load_model(cfg.model, cfg.checkpoint, device)
    params = SamplingParams.from_config(cfg)
    use_chat = cfg.chat if cfg.chat is not None else bool(getattr(tokenizer, "chat", None))
    prompt, stops = cfg.prompt, None
    if use_chat:
        from goldmine import chat

        if not getattr(tokenizer, "chat", None):
            info(f"[yellow]{ckpt}: no chat template recorded (not tuned with `finetune sft`); "
                 "rendering the prompt with goldmine's template anyway[/yellow]")
        messages = [{"role": "system", "content": cfg.system}] if cfg.system else []
        messages.append({"role": "user", "content": cfg.prompt})
        prompt, stops = chat.prompt_ids(tokenizer, messages), chat.stop_ids(tokenizer)
    if on_start:
        on_start({"chat": use_chat})
    with start_run("generate", cfg.to_dict()) as run:
        run.add_parent_from_path(ckpt)
        samples, n_tokens = [], 0
        t0 = time.perf_counter()
        for i in range(cfg.num_samples):
            if params.seed is not None:
                params.seed = cfg.seed + i
            parts, stats = [], {}
            for delta in stream(model, tokenizer, prompt, params, stats=stats, stop_ids=stops):
                parts.append(delta)
                if on_text:
                    on_text(i, delta)
            n_tokens += stats["new_tokens"]
            samples.append("".join(parts))
        seconds = time.perf_counter() - t0
        result = {"run_id": run.id, "model": str(ckpt), "prompt": cfg.prompt, "chat": use_chat,
                  "samples": samples,
                  "new_tokens": n_tokens, "seconds": seconds,
                  "tokens_per_s": n_tokens / seconds if seconds > 0 else None}
        run.log_metrics({"new_tokens": n_tokens, "seconds": seconds,
                         "tokens_per_s": result["tokens_per_s"]})
        from goldmine.files import write_json

        write_json(run.dir / "samples.json", result)
        run.add_artifact("samples", run.dir / "samples.json")
    return result
