"""An LSTM language model in one file: the recurrent baseline next to the GPT.

    tokens -> embedding -> dropout -> n_layer x LSTM (dropout between layers) -> dropout
           -> [linear projection hidden -> n_embd, when they differ] -> linear head -> logits

It is trained by the same loop as the GPT (`goldmine pretrain --arch lstm`), on the same token
shards and windows of `block_size` tokens, each window starting from a zero state, so the two
can be compared at equal parameters, tokens and time. The forward pass keeps the GPT's
contract: logits, or the mean cross-entropy with targets; and `new_cache` returns the recurrent
state, which plays the part of the GPT's KV cache in `goldmine.generate` (fed only the new
tokens, updated in place).

Dropout sits on the non-recurrent connections only (Zaremba et al., 2014): the embedding, between
layers and the last layer's output. The projection lets the hidden width differ from the
embedding width while the head can still be tied to the embedding.

Shapes in comments: B batch, T tokens, E n_embd, H hidden, L n_layer, V vocab_size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LSTMConfig:
    vocab_size: int = 8192
    block_size: int = 128               # training context: tokens per window (truncated BPTT)
    n_layer: int = 2
    n_embd: int = 128                   # embedding (and tied head) width
    hidden: int | None = None           # LSTM hidden width; None: n_embd
    dropout: float = 0.0
    tie_embeddings: bool = False

    arch: ClassVar[str] = "lstm"        # how checkpoints and the cost module tell it from a GPT

    def __post_init__(self):
        if self.hidden is None:
            self.hidden = self.n_embd
        for name in ("vocab_size", "block_size", "n_layer", "n_embd", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def projected(self) -> bool:
        """Whether a projection maps the hidden state back to the embedding width."""
        return self.hidden != self.n_embd

    @classmethod
    def from_dict(cls, d: dict) -> LSTMConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self)}


def lstm_for_params(target: int, **fields_) -> LSTMConfig:
    """The LSTMConfig with `fields_` (vocab_size, n_layer, n_embd, ...) whose hidden width gives
    the parameter count closest to `target`, e.g. a GPT's, for comparisons at equal size.

    The count grows about as 8 L H^2 (the input and recurrent matrices of every layer), so
    every width up to a few times that estimate is counted exactly (goldmine.cost) and the
    closest kept: a loop of arithmetic, instant even for billions of parameters.
    """
    from goldmine.cost import lstm_param_count

    base = LSTMConfig(**{**fields_, "hidden": 1})
    estimate = math.isqrt(max(target, 1) // (8 * base.n_layer)) + 1
    counts = {h: lstm_param_count(replace(base, hidden=h)) for h in range(1, 4 * estimate + 64)}
    best = min(counts, key=lambda h: abs(counts[h] - target))  # ties: the narrower
    return replace(base, hidden=best)


class LSTMState:
    """The recurrent state after the tokens read so far: h and c, (L, B, H) each.

    What `LSTM.new_cache` returns and `LSTM.forward(idx, cache=state)` reads and updates, so
    that generation feeds only the new tokens, as with the GPT's KV cache. Unlike a KV cache
    it never grows: a step costs the same at token 10 as at token 10,000.
    """

    def __init__(self, cfg: LSTMConfig, batch_size: int, device, dtype):
        shape = (cfg.n_layer, batch_size, cfg.hidden)
        self.h = torch.zeros(shape, device=device, dtype=dtype)
        self.c = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # tokens read


class LSTM(nn.Module):
    def __init__(self, cfg: LSTMConfig, seed: int | None = None):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        # nn.LSTM's own dropout applies between layers (not after the last), as wanted
        self.lstm = nn.LSTM(cfg.n_embd, cfg.hidden, num_layers=cfg.n_layer, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.proj = nn.Linear(cfg.hidden, cfg.n_embd, bias=False) if cfg.projected else None
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.reset_parameters(seed)  # with a seed, the same weights whatever the global RNG holds

    def reset_parameters(self, seed: int | None = None):
        """The embedding N(0, 1), as nn.Embedding's default, so that the LSTM's inputs are at
        unit scale (at the GPT's 0.02 its gates barely see the input for the first hundreds of
        steps: char-level Shakespeare, 300 steps, val loss 2.73 against 2.36); projection and
        head N(0, 0.02) as in the GPT; LSTM matrices and biases U(-1/sqrt(H), 1/sqrt(H)), PyTorch's
        default, then the forget-gate biases set to 1 so that the cell state is kept by default
        early in training (Jozefowicz et al., 2015)."""
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.embed.weight.device).manual_seed(seed)
        H = self.config.hidden
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("lstm."):
                    p.uniform_(-1 / math.sqrt(H), 1 / math.sqrt(H), generator=gen)
                else:
                    p.normal_(0.0, 1.0 if name == "embed.weight" else 0.02, generator=gen)
            for layer in range(self.config.n_layer):  # gate rows: [input; forget; cell; output]
                getattr(self.lstm, f"bias_ih_l{layer}")[H:2 * H].fill_(1.0)
                getattr(self.lstm, f"bias_hh_l{layer}")[H:2 * H].zero_()  # the two add up

    def forward(self, idx, targets=None, cache: LSTMState | None = None):
        """idx: (B, T) token ids -> logits (B, T, V), or the mean cross-entropy if targets given.

        targets: (B, T) next-token ids, -100 where no loss is wanted. With a state from
        `new_cache`, idx holds only the new tokens; the state continues after the ones read
        before and is updated in place. Without one, every row starts from a zero state.
        """
        x = self.drop(self.embed(idx))                            # (B, T, E)
        if cache is None:
            x, _ = self.lstm(x)                                   # (B, T, H)
        else:
            x, (cache.h, cache.c) = self.lstm(x, (cache.h, cache.c))   # (L, B, H) each
            cache.pos += idx.size(1)
        x = self.drop(x)
        if self.proj is not None:
            x = self.proj(x)                                      # (B, T, E)
        logits = self.head(x)                                     # (B, T, V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> LSTMState:
        """A zero state for `batch_size` sequences (max_len is the KV cache's; a state has no
        length to reserve)."""
        p = self.head.weight
        return LSTMState(self.config, batch_size, p.device, p.dtype)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_embeddings:
            n -= self.embed.weight.numel()
        return n
