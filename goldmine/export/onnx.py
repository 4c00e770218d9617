"""`goldmine export --format onnx`: the GPT forward pass and text classifiers, for ONNX Runtime.

    export_gpt_onnx(model, out_dir)             goldmine GPT -> model.onnx: input_ids -> logits
    export_classifier_onnx(model_dir, out_dir)  Hugging Face sequence classifier -> model.onnx:
                                                input_ids, attention_mask[, token_type_ids] -> logits

Both export with torch's dynamo exporter (`torch.onnx.export(dynamo=True)`, which needs
onnxscript) with dynamic batch and sequence axes, then run the file in ONNX Runtime on a batch
of a different shape than the export example and compare with PyTorch: a file that computes
something else is never written silently. Only model.onnx is written (plus model.onnx.data when
the weights pass protobuf's 2 GB limit); tokenizer and config files are the caller's job.

The GPT is exported for full-sequence logits only, without the KV cache: every call recomputes
the whole prefix (fine for scoring and short generation; serve with `goldmine serve` for speed).
Its PyTorch forward rotates q/k with complex numbers, which ONNX has no type for, and picks
`is_causal` from the sequence length in Python; `_OnnxGPT` recomputes the same forward with
real cos/sin tables and an always-causal attention, reusing the model's weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from goldmine.errors import GoldmineError

MAX_ABS_DIFF = 1e-4       # ONNX Runtime vs PyTorch logits, fp32 on CPU
ONNX_FILE = "model.onnx"

# a sentence pair and sentences of different lengths: padding and real attention masks
_CHECK_TEXTS = [
    "The service was quick and the food was excellent.",
    "Terrible.",
    "I would not recommend this place to anyone, the staff ignored us for an hour.",
]
_EXAMPLE_TEXTS = ["an example sentence", "another one"]


# ---------------------------------------------------------------------------------------------
# goldmine GPT


class _OnnxGPT(nn.Module):
    """goldmine.model.GPT's full-sequence forward in ONNX-exportable ops: (B, T) ids -> (B, T, V).

    Same weights (the GPT's own submodules), same arithmetic: RMSNorm in fp32, q/k rotated in
    adjacent pairs (x[2i], x[2i+1]) by the angles of `model.rope`, grouped-query attention by
    repeating each key/value head over its H / K query heads, causal for any T.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        rope = model.rope.detach().to("cpu")                      # (block_size, D/2) complex64
        self.register_buffer("cos", rope.real.float().contiguous(), persistent=False)
        self.register_buffer("sin", rope.imag.float().contiguous(), persistent=False)

    @staticmethod
    def _norm(norm: nn.Module, x):                                # (..., C), like RMSNorm
        xf = x.float()
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps)
        return (xf * rstd * norm.weight.float()).type_as(x)

    @staticmethod
    def _rope(x, cos, sin):                                       # x: (B, T, h, D); cos: (T, D/2)
        xf = x.float()
        x1, x2 = xf[..., 0::2], xf[..., 1::2]                     # (B, T, h, D/2) each
        c, s = cos[:, None, :], sin[:, None, :]                   # (T, 1, D/2)
        # (a + ib)(c + is) = (ac - bs) + i(as + bc), interleaved back into pairs
        out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)  # (B, T, h, D/2, 2)
        return out.flatten(-2).type_as(x)

    def _attention(self, attn: nn.Module, x, cos, sin):
        B, T, _ = x.shape
        H, K, D = attn.n_head, attn.n_kv_head, attn.head_dim
        qkv = attn.wqkv(x).view(B, T, H + 2 * K, D)               # (B, T, H + 2K, D)
        qk, v = qkv.split([H + K, K], dim=2)
        q, k = self._rope(qk, cos, sin).split([H, K], dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, D)
        if K != H:  # query head h reads key/value head h // (H / K), as SDPA's enable_gqa
            k = k.repeat_interleave(H // K, dim=1)
            v = v.repeat_interleave(H // K, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        return attn.wo(y.transpose(1, 2).reshape(B, T, H * D))    # (B, T, C)

    def forward(self, input_ids):                                 # (B, T) int64
        m = self.model
        T = input_ids.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]                     # (T, D/2)
        x = m.embed(input_ids)                                    # (B, T, C)
        for block in m.blocks:
            x = x + self._attention(block.attn, self._norm(block.attn_norm, x), cos, sin)
            gate, up = block.mlp.w13(self._norm(block.mlp_norm, x)).chunk(2, dim=-1)
            x = x + block.mlp.w2(F.silu(gate) * up)
        return m.head(self._norm(m.norm, x))                      # (B, T, V)


def export_gpt_onnx(model, out_dir: Path, opset: int = 18) -> dict:
    """A goldmine GPT -> out_dir/model.onnx, checked against the PyTorch model.

    Input `input_ids` int64 (batch, sequence) -> output `logits` float32 (batch, sequence,
    vocab), both axes dynamic (sequence up to model.config.block_size). Full-sequence logits
    only: no KV cache inputs or outputs. Exported in eval mode in fp32 on the CPU (a copy when
    the model is elsewhere or in another dtype; its training flag is restored). Validated with ONNX Runtime on random ids of
    another shape than the export example; raises GoldmineError if the largest absolute logit
    difference exceeds 1e-4, or if export or ONNX Runtime fails.

    Returns {"files": ["model.onnx", ...], "checks": {"onnx_max_abs_diff", "onnx_opset"}}.
    """
    out_dir = Path(out_dir)
    cfg = model.config
    name = f"GPT ({cfg.n_layer} layers, {cfg.n_embd} wide, vocab {cfg.vocab_size})"
    with _cpu_fp32_eval(model) as gpt:
        return _export_gpt(gpt, out_dir, opset, name)


@contextlib.contextmanager
def _cpu_fp32_eval(model: nn.Module) -> Iterator[nn.Module]:
    """The model itself in eval mode (restored after) when it is already fp32 on the CPU,
    else an fp32 CPU copy: the caller's model is never changed."""
    import copy

    p = next(model.parameters())
    if p.device.type == "cpu" and p.dtype == torch.float32:
        training = model.training
        model.eval()
        try:
            yield model
        finally:
            model.train(training)
        return
    gpt = copy.deepcopy(model).to("cpu", torch.float32).eval()
    gpt.rope = gpt.rope.to("cpu")
    yield gpt


def _export_gpt(gpt: nn.Module, out_dir: Path, opset: int, name: str) -> dict:
    cfg = gpt.config
    wrapper = _OnnxGPT(gpt).eval()
    vocab, block = cfg.vocab_size, cfg.block_size

    gen = torch.Generator().manual_seed(0)
    example_shape = (2, min(8, block))
    example = torch.randint(0, vocab, example_shape, generator=gen)
    check_shape = (3, min(17, block))
    if check_shape[1] == example_shape[1]:
        check_shape = (3, max(1, block - 1))
    check = torch.randint(0, vocab, check_shape, generator=gen)

    with torch.no_grad():
        expected = gpt(check).float().numpy()
        # the rewritten forward must be GPT.forward: ONNX Runtime is compared with GPT.forward
        # below too, but a mismatch found here names the culprit
        wrapped = wrapper(check).float().numpy()
    _max_abs_diff(wrapped, expected, f"{name} (the ONNX-ready forward, in PyTorch)")

    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("sequence", min=1, max=block)
    path = out_dir / ONNX_FILE
    files = _export(wrapper, (example,), path, opset, name, input_names=["input_ids"],
                    dynamic_shapes={"input_ids": {0: batch, 1: seq}})
    got = _run_ort(path, {"input_ids": check.numpy()}, name)
    diff = _max_abs_diff(got, expected, name)
    return {"files": files, "checks": {"onnx_max_abs_diff": diff, "onnx_opset": opset}}


# ---------------------------------------------------------------------------------------------
# Hugging Face sequence classifiers


class _Classifier(nn.Module):
    """Positional inputs in a fixed order, `logits` out (HF models return a ModelOutput)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits  # (B, num_labels)


def export_classifier_onnx(model_dir: Path, out_dir: Path, opset: int = 18) -> dict:
    """A Hugging Face sequence-classification directory -> out_dir/model.onnx.

    model_dir is what `goldmine finetune classify` writes into its run's model/ (config.json,
    model.safetensors, tokenizer files, goldmine.json): a BERT/MiniLM-family encoder, or a
    LlamaForSequenceClassification when the backbone was a goldmine GPT. Inputs `input_ids`,
    `attention_mask` (and `token_type_ids` when the model takes them), int64 (batch, sequence);
    output `logits` float32 (batch, num_labels); batch and sequence axes dynamic. Validated with
    ONNX Runtime on a padded batch of tokenized texts of another shape than the export example;
    raises GoldmineError if logits differ by more than 1e-4, or if loading, export or ONNX
    Runtime fails.

    Returns {"files": ["model.onnx", ...], "checks": {"onnx_max_abs_diff", "onnx_opset"}}.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    name = f"classifier {model_dir}"
    if not (model_dir / "config.json").is_file():
        raise GoldmineError(f"{name}: not a Hugging Face model directory (no config.json)")
    model, tokenizer = _load_classifier(model_dir, name)
    kind = type(model).__name__
    name = f"{kind} {model_dir}"

    accepted = _forward_arguments(model)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    example = _encode(tokenizer, _EXAMPLE_TEXTS, names, name)
    check = _encode(tokenizer, _CHECK_TEXTS, names, name)   # 3 rows vs 2: another shape

    limit = getattr(model.config, "max_position_embeddings", None)
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("sequence", min=1, max=limit) if limit else \
        torch.export.Dim("sequence", min=1)
    wrapper = _Classifier(model, names).eval()
    path = out_dir / ONNX_FILE
    files = _export(wrapper, tuple(example[n] for n in names), path, opset, name,
                    input_names=names,
                    dynamic_shapes={"inputs": tuple({0: batch, 1: seq} for _ in names)})

    with torch.no_grad():
        expected = wrapper(*(check[n] for n in names)).float().numpy()
    got = _run_ort(path, {n: check[n].numpy() for n in names}, name)
    diff = _max_abs_diff(got, expected, name)
    return {"files": files, "checks": {"onnx_max_abs_diff": diff, "onnx_opset": opset}}


def _load_classifier(model_dir: Path, name: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from goldmine.hf import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            # eager attention: a plain softmax(QK^T + mask) V graph (SDPA exports too, as
            # the same ops after decomposition; eager keeps the graph simple to read)
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, local_files_only=True, attn_implementation="eager")
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ...
        raise GoldmineError(f"{name}: cannot load a sequence classifier and its tokenizer "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    model = model.to("cpu", torch.float32).eval()
    if tokenizer.pad_token_id is None and getattr(model.config, "pad_token_id", None) is None:
        raise GoldmineError(f"{name}: the tokenizer has no padding token and config.json no "
                            "pad_token_id; batches of different lengths cannot be padded")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = model.config.pad_token_id
    return model, tokenizer


def _forward_arguments(model: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _encode(tokenizer, texts: list[str], names: list[str], name: str) -> dict:
    try:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
    except Exception as e:
        raise GoldmineError(f"{name}: the tokenizer failed on example texts "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    out = {}
    for n in names:
        if n in enc:
            out[n] = enc[n].to(torch.int64)
        elif n == "attention_mask":
            out[n] = torch.ones_like(enc["input_ids"], dtype=torch.int64)
        else:  # token_type_ids the tokenizer does not produce: one segment
            out[n] = torch.zeros_like(enc["input_ids"], dtype=torch.int64)
    return out


# ---------------------------------------------------------------------------------------------
# shared: export quietly, run in ONNX Runtime, compare


@contextlib.contextmanager
def _quiet(buffer: io.StringIO) -> Iterator[None]:
    """The exporter prints progress, logs warnings (torchvision ops skipped, ...) and warns:
    all of it goes into `buffer`, shown only if the export fails."""
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), \
                contextlib.redirect_stderr(buffer):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(module: nn.Module, args: tuple, path: Path, opset: int, name: str, *,
            input_names: list[str], dynamic_shapes) -> list[str]:
    """torch.onnx.export (dynamo) -> path, with weights inside unless over protobuf's 2 GB;
    returns the names of the files written into path's directory."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's op library)
    except ImportError:
        raise GoldmineError(f"{name}: ONNX export needs onnx and onnxscript "
                            "(pip install onnx onnxscript onnxruntime)") from None
    before = set(p.name for p in path.parent.iterdir())
    log = io.StringIO()
    try:
        with _quiet(log), torch.no_grad():
            program = torch.onnx.export(
                module, args, None, dynamo=True, opset_version=opset,
                input_names=input_names, output_names=["logits"],
                dynamic_shapes=dynamic_shapes, verbose=False, report=False, optimize=True)
            nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
            program.save(str(path), external_data=nbytes >= 2_000_000_000 - 64 * 2**20)
    except Exception as e:
        detail = _export_failure(e, log.getvalue())
        raise GoldmineError(f"{name}: ONNX export (opset {opset}) failed: {detail}") from None
    written = sorted(p.name for p in path.parent.iterdir() if p.name not in before)
    return [ONNX_FILE] + [f for f in written if f != ONNX_FILE]


def _export_failure(e: Exception, log: str) -> str:
    """One line about what the exporter could not do: the exporter's own summary names the
    failing step's cause (an op without an ONNX function names that op)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{e}\n{log}")          # ANSI colours
    m = re.search(r"<class '(?:[\w]+\.)*(\w+)'>: ([^\n]*)", text)  # "## Exception summary"
    if m:
        return f"{m.group(1)}: {m.group(2).strip()}"[:400]
    m = re.search(r"[^\n]*[Uu]nsupported[^\n]*", text)
    if m:
        return m.group(0).strip()[:400]
    return f"{type(e).__name__}: {_first_line(e)}"


def _run_ort(path: Path, feeds: dict, name: str):
    try:
        import onnxruntime as ort
    except ImportError:
        raise GoldmineError(f"{name}: checking the ONNX file needs onnxruntime "
                            "(pip install onnxruntime)") from None
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], feeds)
    except Exception as e:
        raise GoldmineError(f"{name}: ONNX Runtime could not run the exported {path.name} "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    return logits


def _max_abs_diff(got, expected, name: str) -> float:
    import numpy as np

    if got.shape != expected.shape:
        raise GoldmineError(f"{name}: the ONNX model returned logits of shape {got.shape}, "
                            f"PyTorch {expected.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    if not diff <= MAX_ABS_DIFF:  # NaN fails too
        raise GoldmineError(f"{name}: the ONNX model's logits differ from PyTorch's by up to "
                            f"{diff:.3g} (limit {MAX_ABS_DIFF:g}); the export is not faithful")
    return diff


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__
