"""The whole GPT in one file: a Llama-style decoder-only transformer.

    tokens -> embedding -> n_layer x [RMSNorm -> GQA attention (RoPE, SDPA) -> +residual
                                      RMSNorm -> SwiGLU MLP                 -> +residual]
           -> RMSNorm -> linear head -> logits

The architecture is Llama's, weight for weight: `goldmine.export.llama` maps the state dict to and from
`transformers.LlamaForCausalLM` names, and a test checks the logits match. Two choices are made
for speed on small hardware and undone by that mapping: the q/k/v projections are one matrix
(`attn.wqkv`) and the SwiGLU gate/up projections are one matrix (`mlp.w13`), so each block runs
four large matrix multiplications instead of seven small ones.

Shapes in comments: B batch, T tokens, C n_embd, H query heads, K key/value heads, D head dim.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from goldmine.config import MODEL_PRESETS


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    block_size: int = 1024              # longest context the rotary tables are built for
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None        # None: n_head (plain multi-head attention)
    n_embd: int = 768
    intermediate_size: int | None = None  # None: 8/3 * n_embd rounded up to a multiple of 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    attn_bias: bool = False             # q/k/v biases (Qwen2-style checkpoints)
    dropout: float = 0.0

    def __post_init__(self):
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = 64 * math.ceil(8 * self.n_embd / 3 / 64)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("head dimension n_embd / n_head must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(MODEL_PRESETS)}")
        values = {**MODEL_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNormFunction(torch.autograd.Function):
    """y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps), and a hand-written backward.

    Autograd through the textbook formula keeps five activation-sized intermediates and makes
    about a dozen passes over them; this keeps only x and the per-row rstd, and its backward
    needs four passes (two of them matrix-vector products), about 2x faster on CPU.
    """

    @staticmethod
    def forward(ctx, x, weight, eps: float):                   # x: (..., C), weight: (C,)
        ms = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.size(-1))
        rstd = ms.add_(eps).rsqrt_()                              # (..., 1)
        ctx.save_for_backward(x, weight, rstd)
        return torch.mul(x, rstd).mul_(weight)

    @staticmethod
    def backward(ctx, dy):
        x, weight, rstd = ctx.saved_tensors
        C = x.size(-1)
        x2, dy2, r = x.reshape(-1, C), dy.reshape(-1, C), rstd.reshape(-1, 1)   # (N, C), (N, 1)
        dyx = dy2 * x2                                            # (N, C)
        dweight = dyx.t() @ r.squeeze(1)                          # (C,): sum_n dy * x * rstd
        s = dyx @ weight                                          # (N,): sum_c dy * w * x
        # dx = rstd * (dy * w - x * rstd^2 * s / C)
        coef = (r * r * s.unsqueeze(1)).div_(C)                   # (N, 1)
        dx = torch.mul(dy2, weight).addcmul_(x2, coef, value=-1).mul_(r)
        return dx.view_as(x), dweight, None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # (..., C) -> (..., C), computed in fp32 like Llama's reference
        if torch.is_grad_enabled():
            return RMSNormFunction.apply(x.float(), self.weight.float(), self.eps).type_as(x)
        # inference: PyTorch's fused kernel, one op instead of eight (decode is op-bound)
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), self.eps).type_as(x)


def rope_table(cfg: GPTConfig, length: int, device=None):
    """Rotation for every position and frequency as unit complex numbers: (length, D/2) complex64.

    Pairs are adjacent features (x[2i], x[2i+1]), as in Meta's Llama code; the export to Hugging
    Face names permutes the q/k weight rows into HF's 'rotate half' layout, and back on import.
    """
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=device) / d))
    angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x, rot):
    """x: (B, T, h, D) real; rot: (T, D/2) or (B, T, D/2) complex. One complex multiply rotates
    every pair."""
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, T, h, D/2)
    return torch.view_as_real(xc * rot.unsqueeze(-2)).flatten(-2).type_as(x)


class KVCache:
    """Keys and values of past tokens for every layer: (B, K, max_len, D) each, filled in place."""

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device, dtype):
        shape = (batch_size, cfg.n_kv_head, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.max_len = max_len
        self.pos = 0  # tokens already stored

    def update(self, layer: int, k, v):
        """Store k, v (B, K, T, D) after the cached ones; return all keys/values so far."""
        t = k.size(2)
        if self.pos + t > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} + {t} > {self.max_len} tokens")
        self.k[layer][:, :, self.pos:self.pos + t] = k
        self.v[layer][:, :, self.pos:self.pos + t] = v
        end = self.pos + t
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class SlotKVCache:
    """Keys and values of many independent sequences for the serving engine: S slots of
    (K, capacity, D) per layer, each slot at its own length.

    Before each forward the engine calls `select(rows, positions, length)`: row b of the batch
    is slot rows[b], its tokens sit at positions[b] (B, T), and attention reads the first
    `length` cached positions of each row, each token seeing only positions <= its own.
    Positions past a sequence's real end (padding in a batched prefill) hold junk that a later
    write overwrites before any token can see it.
    """

    def __init__(self, cfg: GPTConfig, slots: int, capacity: int, device, dtype):
        self.cfg, self.slots, self.device, self.dtype = cfg, slots, device, dtype
        self.capacity = 0
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.reserve(capacity)

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` positions per slot (grows by doubling, keeps contents)."""
        if capacity <= self.capacity:
            return
        new = max(capacity, min(2 * self.capacity, self.cfg.block_size))
        shape = (self.slots, self.cfg.n_kv_head, new, self.cfg.head_dim)
        for store in (self.k, self.v):
            for i in range(self.cfg.n_layer):
                t = torch.zeros(shape, device=self.device, dtype=self.dtype)
                if store and i < len(store):
                    t[:, :, :self.capacity] = store[i]
                    store[i] = t
                else:
                    store.append(t)
        self.capacity = new

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of slot src into slot dst (every layer)."""
        for t in self.k + self.v:
            t[dst, :, :length] = t[src, :, :length]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def select(self, rows: torch.Tensor, positions: torch.Tensor, length: int) -> None:
        """rows: (B,) slot of each batch row; positions: (B, T); length: keys to attend over."""
        self.rows, self.positions, self.length = rows, positions, length
        keys = torch.arange(length, device=positions.device)
        self.mask = (keys[None, None, :] <= positions[:, :, None])[:, None]   # (B, 1, T, L)
        first, B = int(rows[0]), rows.numel()
        contiguous = bool((rows == torch.arange(first, first + B, device=rows.device)).all())
        self.span = slice(first, first + B) if contiguous else None

    def update(self, layer: int, k, v):
        """Write k, v (B, K, T, D) at each row's positions; return (B, K, length, D) each."""
        kc, vc = self.k[layer], self.v[layer]
        kc[self.rows[:, None], :, self.positions] = k.transpose(1, 2)    # (B, T, K, D)
        vc[self.rows[:, None], :, self.positions] = v.transpose(1, 2)
        rows = self.span if self.span is not None else self.rows
        return kc[rows, :, :self.length], vc[rows, :, :self.length]


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        qkv_out = (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim
        self.wqkv = nn.Linear(cfg.n_embd, qkv_out, bias=cfg.attn_bias)    # rows: [q; k; v]
        self.wo = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, rot, cache: KVCache | None = None, mask=None):
        B, T, _ = x.shape
        H, K, D = self.n_head, self.n_kv_head, self.head_dim
        qkv = self.wqkv(x).view(B, T, H + 2 * K, D)               # (B, T, H + 2K, D)
        # split (not slicing): its backward is one concatenation, not zero-filled buffers
        qk, v = qkv.split([H + K, K], dim=2)
        q, k = apply_rope(qk, rot).split([H, K], dim=2)           # q and k rotated together
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, D)

        past = 0
        if cache is not None:  # a SlotKVCache brings its own mask; a KVCache has one length
            past = 0 if mask is not None else cache.pos
            k, v = cache.update(self.layer, k, v)                 # (B, K, past + T, D)
        gqa = K != H  # grouped-query attention: each key/value head serves H / K query heads
        if mask is not None:  # packed sequences: causal within each, blind across them
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                enable_gqa=gqa)
        elif past == 0:  # plain causal attention: SDPA's fused (flash) kernel
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=T > 1, dropout_p=self.dropout if self.training else 0.0,
                enable_gqa=gqa)
        else:  # new tokens see every cached token and the new ones up to themselves
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        y = y.transpose(1, 2).reshape(B, T, H * D)               # (B, T, H * D)
        return self.wo(y)                                         # (B, T, C)


class SwiGLUFunction(torch.autograd.Function):
    """silu(gate) * up, where [gate; up] is one tensor (the output of the fused w13 matmul).

    Autograd through `chunk` would build the input gradient with an extra concatenation of two
    activation-sized tensors; here both halves are written into one buffer directly.
    """

    @staticmethod
    def forward(ctx, gate_up):                                    # (..., 2I) -> (..., I)
        gate, up = gate_up.chunk(2, dim=-1)
        act = F.silu(gate)
        ctx.save_for_backward(gate_up, act)
        return act * up

    @staticmethod
    def backward(ctx, dy):                                        # dy: (..., I)
        gate_up, act = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        grad = torch.empty_like(gate_up)
        dgate, dup = grad.chunk(2, dim=-1)
        torch.mul(dy, act, out=dup)
        torch.ops.aten.silu_backward.grad_input(dy * up, gate, grad_input=dgate)
        return grad


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up computed by one matmul."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.hidden = cfg.intermediate_size
        self.w13 = nn.Linear(cfg.n_embd, 2 * self.hidden, bias=False)   # rows: [gate; up]
        self.w2 = nn.Linear(self.hidden, cfg.n_embd, bias=False)        # down

    def forward(self, x):                                         # (B, T, C)
        gate_up = self.w13(x)                                     # (B, T, 2I)
        if torch.is_grad_enabled():
            return self.w2(SwiGLUFunction.apply(gate_up))         # (B, T, I) -> (B, T, C)
        gate, up = gate_up.chunk(2, dim=-1)
        return self.w2(F.silu(gate).mul_(up))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)
        # no dropout module at all when p = 0: even a no-op dropout costs a kernel per call
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x, rot, cache=None, mask=None):
        if isinstance(self.dropout, nn.Identity):
            x = x + self.attn(self.attn_norm(x), rot, cache, mask)
            return x + self.mlp(self.mlp_norm(x))
        x = x + self.dropout(self.attn(self.attn_norm(x), rot, cache, mask))
        x = x + self.dropout(self.mlp(self.mlp_norm(x)))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig, seed: int | None = None):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        # a plain attribute, not a buffer: `model.to(torch.bfloat16)` must not touch complex64
        self.rope = rope_table(cfg, cfg.block_size, device="cpu")
        self.reset_parameters(seed)  # with a seed, the same weights whatever the global RNG holds

    def reset_parameters(self, seed: int | None = None):
        """GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 n_layer)."""
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.embed.weight.device).manual_seed(seed)
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 1:  # norm weights and biases
                if name.endswith("norm.weight"):
                    nn.init.ones_(p)
                else:
                    nn.init.zeros_(p)
                continue
            s = std / math.sqrt(2 * self.config.n_layer) if name.endswith(("wo.weight", "w2.weight")) else std
            with torch.no_grad():
                p.normal_(0.0, s, generator=gen)

    def forward(self, idx, targets=None, cache: KVCache | SlotKVCache | None = None,
                segments=None, last=None):
        """idx: (B, T) token ids -> logits (B, T, V), or the mean cross-entropy if targets given.

        targets: (B, T) next-token ids, -100 where no loss is wanted. With a KV cache, idx holds
        only the new tokens; their positions continue after the cached ones. segments: (B, T)
        ids of the sequences packed into each row (non-decreasing along T): each token attends
        only within its own sequence, and positions restart at 0 for each. A SlotKVCache (the
        serving engine's) gives every row its own positions and cached length. last: (B,)
        index of one token per row: only its logits are computed, (B, 1, V) (a prefill needs
        the next-token logits of its last prompt token only).
        """
        B, T = idx.shape
        start = cache.pos if isinstance(cache, KVCache) else 0
        if start + T > self.rope.size(0):
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        if self.rope.device != idx.device:
            self.rope = self.rope.to(idx.device)
        rot, mask = self.rope[start:start + T], None              # (T, D/2) complex
        if isinstance(cache, SlotKVCache):  # each row at its own positions (serving engine)
            rot, mask = self.rope[cache.positions], cache.mask   # (B, T, D/2), (B, 1, T, L)
        elif segments is not None:
            pos = torch.arange(T, device=idx.device).expand(B, T)
            first = torch.ones_like(segments, dtype=torch.bool)
            first[:, 1:] = segments[:, 1:] != segments[:, :-1]   # a sequence starts here
            starts = torch.cummax(torch.where(first, pos, 0), dim=1).values
            rot = self.rope[pos - starts]                         # (B, T, D/2)
            same = segments[:, :, None] == segments[:, None, :]   # (B, T, T)
            mask = (same & torch.ones(T, T, dtype=torch.bool, device=idx.device).tril())[:, None]
        x = self.embed(idx)                                       # (B, T, C)
        for block in self.blocks:
            x = block(x, rot, cache, mask)
        if isinstance(cache, KVCache):
            cache.pos += T
        if last is not None:
            x = x[torch.arange(B, device=x.device), last][:, None]   # (B, 1, C)
        x = self.norm(x)
        logits = self.head(x)                                     # (B, T, V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        p = self.norm.weight  # not embed.weight: int8 after `goldmine quantize`
        return KVCache(self.config, batch_size, max_len or self.config.block_size, p.device, p.dtype)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        n += sum(b.numel() for b in self.buffers() if b.dtype == torch.int8)  # quantized weights
        if non_embedding and not self.config.tie_embeddings:
            n -= self.embed.weight.numel()
        return n
