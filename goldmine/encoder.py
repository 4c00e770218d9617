"""A BERT-style encoder in one file: what `goldmine pretrain --objective mlm` trains.

    tokens -> word + position + token-type embeddings -> LayerNorm -> dropout
           -> n_layer x [self-attention (bidirectional, SDPA) -> dropout -> +residual -> LayerNorm
                         dense -> GELU -> dense               -> dropout -> +residual -> LayerNorm]
           -> MLM head: dense -> GELU -> LayerNorm -> word embeddings^T + bias -> logits

The architecture is BERT's (Devlin et al., 2019), post-LN, weight for weight: the modules carry
the names of transformers' `BertForMaskedLM`, so the state dict *is* that model's (the decoder
shares the word embeddings and `cls.predictions.bias`, which is how transformers saves it too),
and `save_hf` writes a directory that `AutoModelForMaskedLM` and
`AutoModelForSequenceClassification` load as it is; a test checks the logits match.

The forward keeps the GPT's contract: logits, or with `targets` (the original ids at the masked
positions, -100 elsewhere; see goldmine/data/mlm.py) the mean cross-entropy over the masked
positions. Only those positions go through the head: with 15% of them masked, the vocabulary
projection, the largest matmul of a small encoder, costs a seventh of what it would.

Shapes in comments: B batch, T tokens, C n_embd, H heads, D head dim, F intermediate size,
V vocab_size, N masked positions in the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from goldmine.config import ENCODER_PRESETS


@dataclass
class EncoderConfig:
    vocab_size: int = 8192
    block_size: int = 128               # max_position_embeddings: the longest input, [CLS]/[SEP] in
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 128
    intermediate_size: int | None = None  # None: 4 * n_embd, as in BERT
    type_vocab_size: int = 2            # segment A / B (sentence pairs), as in BERT
    dropout: float = 0.0                # on embeddings, attention probabilities and residuals
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    arch: ClassVar[str] = "bert"        # how checkpoints tell it from a GPT or an LSTM

    def __post_init__(self):
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd",
                     "intermediate_size", "type_vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_preset(cls, name: str, **overrides) -> EncoderConfig:
        if name not in ENCODER_PRESETS:
            raise ValueError(f"unknown encoder preset {name!r}; choose one of "
                             f"{', '.join(ENCODER_PRESETS)}")
        values = {**ENCODER_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self)}

    def to_hf(self) -> dict:
        """The config.json of transformers' BertForMaskedLM with these dimensions."""
        return {
            "architectures": ["BertForMaskedLM"], "model_type": "bert",
            "vocab_size": self.vocab_size, "hidden_size": self.n_embd,
            "num_hidden_layers": self.n_layer, "num_attention_heads": self.n_head,
            "intermediate_size": self.intermediate_size, "hidden_act": "gelu",
            "hidden_dropout_prob": self.dropout, "attention_probs_dropout_prob": self.dropout,
            "max_position_embeddings": self.block_size, "type_vocab_size": self.type_vocab_size,
            "initializer_range": 0.02, "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id, "tie_word_embeddings": True,
            "classifier_dropout": None, "dtype": "float32",
        }


class Group(nn.Module):
    """Submodules under given names, so that parameter names are BERT's
    (`attention.self.query.weight`, ...) while the arithmetic stays in the forwards below."""

    def __init__(self, /, **modules: nn.Module):  # `self` may be a module's name, as in BERT
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        C = cfg.n_embd
        self.word_embeddings = nn.Embedding(cfg.vocab_size, C, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.block_size, C)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, idx, token_type_ids=None):                 # idx: (B, T)
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)                  # (T,)
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(idx)
        x = (self.word_embeddings(idx) + self.position_embeddings(pos)
             + self.token_type_embeddings(types))                 # (B, T, C)
        return self.dropout(self.LayerNorm(x))


class Block(nn.Module):
    """One post-LN transformer layer: attention, add, norm; feed-forward, add, norm."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        C, Fi, eps = cfg.n_embd, cfg.intermediate_size, cfg.layer_norm_eps
        self.n_head, self.p_drop = cfg.n_head, cfg.dropout
        self.attention = Group(
            self=Group(query=nn.Linear(C, C), key=nn.Linear(C, C), value=nn.Linear(C, C)),
            output=Group(dense=nn.Linear(C, C), LayerNorm=nn.LayerNorm(C, eps=eps)))
        self.intermediate = Group(dense=nn.Linear(C, Fi))
        self.output = Group(dense=nn.Linear(Fi, C), LayerNorm=nn.LayerNorm(C, eps=eps))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None):          # x: (B, T, C); mask: (B, 1, 1, T) bool, True = attend
        B, T, C = x.shape
        qkv = self.attention.self

        def heads(t):                                             # (B, T, C) -> (B, H, T, D)
            return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

        q, k, v = heads(qkv.query(x)), heads(qkv.key(x)), heads(qkv.value(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.p_drop if self.training else 0.0)
        a = a.transpose(1, 2).reshape(B, T, C)                    # (B, T, C)
        out = self.attention.output
        x = out.LayerNorm(x + self.dropout(out.dense(a)))         # post-LN: norm after the add
        h = F.gelu(self.intermediate.dense(x))                    # (B, T, F), exact (erf) GELU
        return self.output.LayerNorm(x + self.dropout(self.output.dense(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, seed: int | None = None):
        super().__init__()
        self.config = cfg
        C = cfg.n_embd
        self.bert = Group(embeddings=Embeddings(cfg),
                          encoder=Group(layer=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))))
        # the MLM head; its decoder is the word embedding matrix (tied), plus this bias
        self.cls = Group(predictions=Group(
            transform=Group(dense=nn.Linear(C, C), LayerNorm=nn.LayerNorm(C, eps=cfg.layer_norm_eps))))
        self.cls.predictions.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.reset_parameters(seed)  # with a seed, the same weights whatever the global RNG holds

    def reset_parameters(self, seed: int | None = None):
        """BERT's initialisation: matrices and embeddings N(0, 0.02), biases 0, LayerNorms 1 and
        0; the [PAD] embedding row 0 (and, through padding_idx, it never learns)."""
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.cls.predictions.bias.device).manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "LayerNorm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, 0.02, generator=gen)
            self.bert.embeddings.word_embeddings.weight[self.config.pad_token_id].zero_()

    def encode(self, idx, attention_mask=None, token_type_ids=None):
        """idx: (B, T) token ids -> hidden states (B, T, C). attention_mask: (B, T), 1 for tokens
        and 0 for padding (no query attends to a padded key), as in transformers."""
        if idx.size(1) > self.config.block_size:
            raise ValueError(f"input of {idx.size(1)} tokens is longer than block_size "
                             f"{self.config.block_size}")
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]        # (B, 1, 1, T)
        x = self.bert.embeddings(idx, token_type_ids)             # (B, T, C)
        for block in self.bert.encoder.layer:
            x = block(x, mask)
        return x

    def head(self, h):
        """Hidden states (..., C) -> vocabulary logits (..., V)."""
        t = self.cls.predictions.transform
        h = t.LayerNorm(F.gelu(t.dense(h)))
        return F.linear(h, self.bert.embeddings.word_embeddings.weight, self.cls.predictions.bias)

    def forward(self, idx, targets=None, attention_mask=None, token_type_ids=None):
        """idx: (B, T) -> logits (B, T, V), or with targets (B, T) (-100 where nothing is
        predicted) the mean cross-entropy over the positions that have one."""
        h = self.encode(idx, attention_mask, token_type_ids)     # (B, T, C)
        if targets is None:
            return self.head(h)
        logits, y = self.masked_logits(h, targets)
        return F.cross_entropy(logits.float(), y)

    def masked_logits(self, h, targets):
        """(logits (N, V), targets (N,)) at the positions with a target: the head runs on
        those only."""
        where = targets != -100                                   # (B, T)
        return self.head(h[where]), targets[where]

    @torch.no_grad()
    def mlm_metrics(self, idx, targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean loss, correct predictions, predictions) over the masked positions of a batch."""
        logits, y = self.masked_logits(self.encode(idx), targets)
        loss = F.cross_entropy(logits.float(), y)
        return loss, (logits.argmax(-1) == y).sum(), torch.tensor(y.numel(), device=y.device)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.bert.embeddings.word_embeddings.weight.numel()
        return n


# ------------------------------------------------------------------------------- the HF form
def save_hf(cfg: EncoderConfig, weights: Path, tokenizer, out: Path) -> Path:
    """Write `out` as a Hugging Face BERT directory, atomically: config.json (transformers'
    BertForMaskedLM), model.safetensors (a copy of `weights`, a goldmine checkpoint's: the names
    already are BERT's) and the tokenizer (a goldmine.data.mlm.MLMTokenizer) in transformers'
    form."""
    import shutil

    from goldmine.checkpoint import atomic_dir
    from goldmine.files import write_json

    with atomic_dir(Path(out)) as tmp:
        write_json(tmp / "config.json", cfg.to_hf())
        shutil.copyfile(weights, tmp / "model.safetensors")
        tokenizer.save_hf(tmp, model_max_length=cfg.block_size)
    return Path(out)


def checkpoint_to_hf(ckpt: Path, out: Path) -> Path:
    """An encoder checkpoint of `pretrain --objective mlm` (checkpoints/step-N or best) written
    as a Hugging Face BERT directory at `out`."""
    from goldmine.data.mlm import MLMTokenizer
    from goldmine.errors import GoldmineError
    from goldmine.files import read_json

    meta = read_json(ckpt / "config.json", "config.json")
    try:
        cfg = EncoderConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise GoldmineError(f"{ckpt / 'config.json'}: bad encoder config ({e})") from None
    return save_hf(cfg, ckpt / "model.safetensors", MLMTokenizer.load(ckpt / "tokenizer.json"), out)
