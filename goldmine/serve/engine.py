"""The serving engine: token ids in, token ids out, many requests at once. No HTTP here.

    submit() -> waiting queue -> admitted to a cache slot -> prefill (in chunks) -> decode ... -> done

One scheduler thread runs the model. Each turn of its loop:

  1. drops cancelled requests and admits waiting ones while a slot is free and the tokens they
     may cache (prompt + max_tokens) fit under `max_cached_tokens`;
  2. prefills at most `prefill_chunk` prompt tokens, the prompts of several new requests in one
     padded batch; a long prompt is split over several turns, so it never stalls the others;
  3. runs one decode step for every request past its prefill: one forward of (B, 1) tokens,
     one sampled token per request, handed to its consumer at once.

A request joins the running batch at the next turn (continuous batching) and leaves it the turn
it finishes, freeing its slot. Each request samples with its own parameters and, with a seed,
its own random generator. Past the queue limit `submit` raises `Overloaded` with a retry delay
rather than taking memory it does not have: the KV cache never holds more than `max_batch`
sequences of at most the model's context.
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from goldmine.errors import GoldmineError
from goldmine.model import GPT, SlotKVCache


class Overloaded(GoldmineError):
    """The engine's queue is full; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Sampling:
    """How one request picks its tokens. temperature 0 is greedy (top_k/top_p then unused)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop_ids: tuple[int, ...] = ()          # tokens that end the answer (not returned)

    def check(self) -> None:
        if self.max_tokens < 1:
            raise GoldmineError(f"max_tokens: must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise GoldmineError(f"temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise GoldmineError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise GoldmineError(f"top_k: must be >= 1, got {self.top_k}")


@dataclass
class EngineConfig:
    max_batch: int = 32                     # sequences decoded together (= KV cache slots)
    max_cached_tokens: int | None = None    # sum of prompt + max_tokens over running requests
                                            # (None: max_batch x context)
    prefill_chunk: int = 128                # prompt tokens prefilled per scheduler turn
    max_queue: int = 256                    # waiting requests before submit() refuses
    compile: bool = False                   # torch.compile the model (dynamic shapes): faster
                                            # steps after a warm-up that compiles it


_ids = itertools.count()


@dataclass(eq=False)
class Request:
    """One generation. Iterate it for new token ids as they come; `finish_reason` is set
    ('stop', 'length' or 'cancelled') before the iteration ends."""

    prompt: list[int]
    sampling: Sampling
    on_token: Callable[[int | None], None] | None = None   # called from the engine thread;
                                                          # None marks the end
    id: int = field(default_factory=lambda: next(_ids))
    tokens: list[int] = field(default_factory=list)       # generated so far (no stop token)
    finish_reason: str | None = None
    submitted: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    cancelled: bool = False
    # engine state
    slot: int = -1
    length: int = 0                          # tokens of this request in the KV cache
    pending: int | None = None               # sampled, not yet fed back through the model
    generator: torch.Generator | None = None
    _queue: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    _done: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop generating (the client went away); the slot is freed at the next turn."""
        self.cancelled = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request has finished; False if `timeout` seconds passed first."""
        return self._done.wait(timeout)

    def __iter__(self) -> Iterator[int]:
        if self.on_token is not None:
            raise TypeError("this request hands its tokens to on_token; use wait() instead")
        while True:
            tok = self._queue.get()
            if tok is None:
                return
            yield tok

    def _emit(self, tok: int | None) -> None:
        if self.on_token is not None:
            self.on_token(tok)
        else:
            self._queue.put(tok)

    @property
    def reserved(self) -> int:
        """Cache positions this request may come to hold."""
        return len(self.prompt) + self.sampling.max_tokens


class Engine:
    """Continuous batching over one GPT. Thread-safe `submit`; one scheduler thread."""

    def __init__(self, model: GPT, cfg: EngineConfig | None = None,
                 on_step: Callable[[str, int, int], None] | None = None):
        self.model = model.eval()
        self.cfg = cfg or EngineConfig()
        self.context = model.config.block_size
        self.max_cached = self.cfg.max_cached_tokens or self.cfg.max_batch * self.context
        if self.cfg.max_batch < 1 or self.cfg.prefill_chunk < 1 or self.cfg.max_queue < 0:
            raise GoldmineError("engine: max_batch and prefill_chunk must be >= 1, max_queue >= 0")
        p = next(model.parameters())
        self.device = p.device
        self.cache = SlotKVCache(model.config, self.cfg.max_batch, min(256, self.context),
                                 p.device, p.dtype)
        self.on_step = on_step            # (phase 'prefill'|'decode', rows, tokens) after each forward
        self.forward = torch.compile(model, dynamic=True) if self.cfg.compile else model
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []   # holding a slot: prefilling or decoding
        self.reserved = 0
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None
        self.running = False
        self.error: BaseException | None = None
        self.generated_tokens = 0

    # -- public --------------------------------------------------------------------------------
    def start(self) -> Engine:
        """Run the scheduler in a background thread."""
        if self.thread is None and not self.running:
            self.running = True
            self.thread = threading.Thread(target=self._loop, name="goldmine-engine", daemon=True)
            self.thread.start()
        return self

    def run(self) -> None:
        """Run the scheduler in the calling thread until stop() (from another thread) or Ctrl-C.

        On small CPUs this is the fast way: PyTorch's OpenMP thread pool belongs to the thread
        that first used it (the main thread, which loaded the model), and the same decode step
        runs up to 2x slower from any other thread. `goldmine serve` therefore runs HTTP in a
        background thread and its first model's engine here.
        """
        self.running = True
        try:
            self._loop()
        finally:
            self.running = False

    def stop(self, timeout: float = 10.0) -> None:
        with self.wake:
            self.running = False
            self.wake.notify()
        if self.thread is not None:
            self.thread.join(timeout)
            self.thread = None
        for r in list(self.waiting) + self.active:   # nobody waits forever on a stopped engine
            self._finish(r, "cancelled")
        self.waiting.clear()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def batch_size(self) -> int:
        return len(self.active)

    def check(self, prompt_len: int, max_tokens: int) -> None:
        """Raise GoldmineError when a request of this shape can never be served."""
        if prompt_len < 1:
            raise GoldmineError("the prompt is empty")
        if prompt_len + max_tokens > self.context:
            raise GoldmineError(
                f"this model's context is {self.context} tokens; the prompt is {prompt_len} "
                f"and max_tokens {max_tokens}: shorten the prompt or lower max_tokens")
        if prompt_len + max_tokens > self.max_cached:
            raise GoldmineError(f"the prompt ({prompt_len}) plus max_tokens ({max_tokens}) "
                                f"exceed the server's max_cached_tokens ({self.max_cached})")

    def submit(self, prompt: list[int], sampling: Sampling | None = None,
               on_token: Callable[[int | None], None] | None = None) -> Request:
        sampling = sampling or Sampling()
        sampling.check()
        self.check(len(prompt), sampling.max_tokens)
        req = Request(list(prompt), sampling, on_token)
        if sampling.temperature >= MIN_TEMPERATURE:
            req.generator = torch.Generator(device=self.device)
            req.generator.manual_seed(sampling.seed if sampling.seed is not None
                                      else secrets.randbits(63))
        with self.wake:
            if self.error is not None:
                raise GoldmineError(f"the engine stopped: {self.error}")
            if len(self.waiting) >= self.cfg.max_queue:
                raise Overloaded(f"server busy: {len(self.waiting)} requests waiting",
                                 retry_after=1 + len(self.waiting) // max(1, self.cfg.max_batch))
            self.waiting.append(req)
            self.wake.notify()
        return req

    def generate(self, prompt: list[int], sampling: Sampling | None = None) -> list[int]:
        """Blocking convenience: the new token ids of one request. On an engine that is not
        running, the calling thread runs the scheduler until the request is done."""
        req = self.submit(prompt, sampling)
        if not self.running:
            self._run_here([req])
            return req.tokens
        return list(req)

    def _run_here(self, requests: list[Request]) -> None:
        """Schedule in the calling thread until `requests` are done (engine not started)."""
        with torch.inference_mode():
            while any(r.finish_reason is None for r in requests):
                with self.wake:
                    self._admit()
                self._turn()

    # -- scheduler -----------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self.wake:
                        while self.running and not self.waiting and not self.active:
                            self.wake.wait()
                        if not self.running:
                            return
                        self._admit()
                    self._turn()
        except Exception as e:  # a model failure ends every request instead of hanging them
            logging.getLogger("goldmine.serve").exception("the engine stopped")
            self.error = e
            with self.wake:
                for r in list(self.waiting) + self.active:
                    self._finish(r, "error")
                self.waiting.clear()
                self.active.clear()

    def _admit(self) -> None:
        """Move waiting requests into free slots (called with the lock held)."""
        while self.waiting:
            r = self.waiting[0]
            if r.cancelled:
                self.waiting.popleft()
                self._finish(r, "cancelled")
                continue
            if len(self.active) >= self.cfg.max_batch or self.reserved + r.reserved > self.max_cached:
                return
            self.waiting.popleft()
            r.slot = len(self.active)          # slots 0..n-1 are always the n active requests
            self.reserved += r.reserved
            self.active.append(r)

    def _turn(self) -> None:
        for r in [r for r in self.active if r.cancelled]:
            self._release(r, "cancelled")
        prefilling = [r for r in self.active if r.length < len(r.prompt)]
        if prefilling:
            self._prefill(prefilling)
        decoding = [r for r in self.active if r.pending is not None]
        if decoding:
            self._decode(decoding)

    def _prefill(self, requests: list[Request]) -> None:
        budget, rows = self.cfg.prefill_chunk, []
        for r in requests:
            if budget <= 0:
                break
            n = min(len(r.prompt) - r.length, budget)
            rows.append((r, r.prompt[r.length:r.length + n]))
            budget -= n
        T = max(len(chunk) for _, chunk in rows)
        self.cache.reserve(min(self.context, max(r.length + T for r, _ in rows)))
        top = self.cache.capacity - 1
        ids = torch.zeros(len(rows), T, dtype=torch.long)
        pos = torch.empty(len(rows), T, dtype=torch.long)
        for b, (r, chunk) in enumerate(rows):
            ids[b, :len(chunk)] = torch.tensor(chunk)
            # padding continues past the chunk (clamped to the cache): junk no token can see
            pos[b] = torch.arange(r.length, r.length + T).clamp_(max=top)
        slots = torch.tensor([r.slot for r, _ in rows])
        length = min(self.cache.capacity, max(r.length + T for r, _ in rows))
        last = torch.tensor([len(chunk) - 1 for _, chunk in rows])
        logits = self._forward(ids, slots, pos, length, last)[:, 0]   # (B, V): each row's last
        if self.on_step:
            self.on_step("prefill", len(rows), sum(len(c) for _, c in rows))
        done = []
        for b, (r, chunk) in enumerate(rows):
            r.length += len(chunk)
            if r.length == len(r.prompt):           # prompt done: its last logits give token 1
                done.append((b, len(chunk) - 1, r))
        if done:
            self._accept([r for _, _, r in done], logits[[b for b, _, _ in done]])

    def _decode(self, requests: list[Request]) -> None:
        """One token for every decoding request. The batch is the slot range 0..hi-1, a view of
        the cache rather than a gathered copy; a slot still prefilling rides along with a dummy
        token written past its prompt so far, where its next chunk overwrites it."""
        by_slot = {r.slot: r for r in self.active}
        hi = max(r.slot for r in requests) + 1
        self.cache.reserve(min(self.context, max(by_slot[s].length for s in range(hi)) + 1))
        top = self.cache.capacity - 1
        ids = torch.tensor([[by_slot[s].pending or 0] for s in range(hi)])            # (B, 1)
        pos = torch.tensor([[min(by_slot[s].length, top)] for s in range(hi)])       # (B, 1)
        logits = self._forward(ids, torch.arange(hi), pos, int(pos.max()) + 1)[:, -1]
        logits = logits[[r.slot for r in requests]]                                  # (n, V)
        if self.on_step:
            self.on_step("decode", len(requests), len(requests))
        for r in requests:
            r.length += 1
            r.pending = None
        self._accept(requests, logits)

    def _forward(self, ids, slots, pos, length, last=None):
        d = self.device
        self.cache.select(slots.to(d), pos.to(d), length)
        return self.forward(ids.to(d), cache=self.cache,
                            last=None if last is None else last.to(d))

    def warm_up(self) -> None:
        """Run a few requests of different shapes through an engine that is not running yet, so
        that a compiled model is compiled before the first client waits for it."""
        n = min(self.context - 8, 40)
        for batch, length in ((1, n), (2, n // 2), (3, 5)):
            self._run_here([self.submit(list(range(1, length + 1)),
                                        Sampling(max_tokens=4, temperature=0))
                            for _ in range(batch)])

    def _accept(self, requests: list[Request], logits: torch.Tensor) -> None:
        """Sample one token per request from its logits (B, V); hand it over; finish the done."""
        tokens = sample(logits, [r.sampling for r in requests], [r.generator for r in requests])
        now = time.perf_counter()
        for r, tok in zip(requests, tokens.tolist()):
            if r.first_token_at is None:
                r.first_token_at = now
            if r.cancelled:
                self._release(r, "cancelled")
            elif tok in r.sampling.stop_ids:
                self._release(r, "stop")
            else:
                r.tokens.append(tok)
                self.generated_tokens += 1
                r._emit(tok)
                if len(r.tokens) >= r.sampling.max_tokens or r.length >= self.context:
                    self._release(r, "length")
                else:
                    r.pending = tok

    def _release(self, r: Request, reason: str) -> None:
        with self.wake:
            if r in self.active:
                self.active.remove(r)
                self.reserved -= r.reserved
                last = next((a for a in self.active if a.slot == len(self.active)), None)
                if last is not None:  # keep slots 0..n-1 packed: the last one fills the gap
                    self.cache.move(last.slot, r.slot, last.length)
                    last.slot = r.slot
        self._finish(r, reason)

    @staticmethod
    def _finish(r: Request, reason: str) -> None:
        if r.finish_reason is None:
            r.finish_reason = reason
            r._emit(None)
            r._done.set()


MIN_TEMPERATURE = 1e-3   # below this, sampling is greedy (and 1 / T cannot overflow)


def sample(logits: torch.Tensor, params: list[Sampling],
           generators: list[torch.Generator | None]) -> torch.Tensor:
    """One token per row of logits (B, V): argmax for greedy rows; for the others temperature,
    then top-k, then top-p (nucleus), then a draw from the row's own generator (one uniform
    number per row, mapped through the row's cumulative distribution)."""
    logits = logits.float()
    out = logits.argmax(-1)                                               # (B,)
    rows = [i for i, p in enumerate(params) if p.temperature >= MIN_TEMPERATURE]
    if not rows:
        return out
    V, dev = logits.size(-1), logits.device
    sub = logits[rows] / torch.tensor([params[i].temperature for i in rows], device=dev)[:, None]
    filtered = any(params[i].top_k is not None or params[i].top_p < 1 for i in rows)
    if filtered:  # sort once: top-k and top-p are prefixes of the sorted distribution
        sub, order = sub.sort(-1, descending=True)                        # (n, V)
    probs = sub.softmax(-1)
    if filtered:
        top_k = torch.tensor([min(params[i].top_k or V, V) for i in rows], device=dev)
        top_p = torch.tensor([params[i].top_p for i in rows], device=dev)
        keep = torch.arange(V, device=dev)[None] < top_k[:, None]
        keep &= probs.cumsum(-1) - probs < top_p[:, None]   # mass before this token is < p
        keep[:, 0] = True
        probs = probs * keep
    cdf = probs.cumsum(-1)                                                # (n, V)
    u = torch.cat([torch.rand(1, generator=generators[i], device=dev) for i in rows])
    pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp_(max=V - 1)   # (n, 1)
    if filtered:
        pick = order.gather(1, pick)
    out[rows] = pick[:, 0]
    return out
