"""Checkpoints: safetensors + JSON + tokenizer.json, written atomically, never unpickled.

    checkpoints/step-000500/
      config.json           {"format": "goldmine-gpt/1", "arch": "gpt", "lstm" or "bert" (none:
                             gpt), "model": {...GPTConfig, LSTMConfig or EncoderConfig...},
                             "data": {how text was framed}, "chat": {template; chat models}}
      tokenizer_config.json chat models: the chat template in transformers' form
      model.safetensors     weights (a tied output head is stored once, as embed.weight)
      tokenizer.json        the tokenizer the model was trained with
      trainer.json          step, tokens seen, best val loss, pretrain config, optimizer hyper-
                            parameters: everything `--resume` needs besides tensors
      optimizer.safetensors AdamW moments and step counts, one tensor per (param, name)
      rng.safetensors       torch RNG states (dropout)

A checkpoint is first written to a temporary directory beside its final place and then renamed,
so a crash leaves either the old state or the new one, never half a checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from goldmine.errors import GoldmineError
from goldmine.files import read_json, write_json

FORMAT = "goldmine-gpt/1"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_embeddings", False):
        sd.pop("head.weight", None)  # the same tensor as embed.weight; safetensors stores it once
    return sd


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors plus its JSON-able hyperparameters."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{idx}.{name}"] = t.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def save_checkpoint(path: str | Path, model, tokenizer_path: str | Path, trainer_state: dict,
                    optimizer: torch.optim.Optimizer | None = None,
                    data: dict | None = None, chat: dict | None = None) -> Path:
    """`data`: how the training text was framed, e.g. {"bos": True, "eos": True}, so that
    generation frames prompts the same way. `chat`: the chat template (goldmine.chat) the model
    was tuned with; also written as tokenizer_config.json for transformers."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        meta = {"format": FORMAT, "arch": getattr(model.config, "arch", "gpt"),
                "model": model.config.to_dict(), "data": data or {}}
        if chat:
            from goldmine.chat import tokenizer_config

            meta["chat"] = chat
            write_json(tmp / "tokenizer_config.json", tokenizer_config(chat))
        write_json(tmp / "config.json", meta)
        save_file(model_tensors(model), tmp / "model.safetensors", metadata={"format": "pt"})
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
        state = dict(trainer_state)
        if optimizer is not None:
            tensors, hyper = optimizer_tensors(optimizer)
            save_file(tensors, tmp / "optimizer.safetensors")
            state["optimizer"] = hyper
            save_file(rng_tensors(), tmp / "rng.safetensors")
        write_json(tmp / "trainer.json", state)
    return path


def rng_tensors() -> dict[str, torch.Tensor]:
    """torch's RNG states (CPU, and every CUDA device), for an exact --resume."""
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return rng


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary directory beside `path` to write into; it replaces `path` when the block
    ends normally and is removed when it fails, so `path` is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory `src` to `dst`, replacing an existing `dst` with (nearly) no gap."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GoldmineError(f"{path}: missing from the checkpoint")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise GoldmineError(f"{path}: corrupt or not a safetensors file ({e})") from None


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def resolve_checkpoint(ref: str | Path, which: str = "best") -> Path:
    """A checkpoint directory from a run id, run directory or checkpoint directory.

    `which`: 'best' (lowest validation loss; falls back to the last), 'last', or a step number.
    """
    p = Path(ref)
    if p.is_file():
        if p.suffix in PICKLE_SUFFIXES:
            raise GoldmineError(f"{p}: a pickle file; goldmine loads only safetensors checkpoints "
                                "(a directory with config.json and model.safetensors)")
        raise GoldmineError(f"{p}: expected a run or checkpoint directory, got a file")
    if not p.exists():
        from goldmine.registry import Registry

        try:
            p = Path(Registry().get(str(ref))["run_dir"])
        except GoldmineError:
            raise GoldmineError(f"{ref}: no such checkpoint directory or run id") from None
    if is_checkpoint(p):
        return p
    if is_checkpoint(p / "model"):  # a `finetune sft` run: its best model
        return p / "model"
    ckdir = p / "checkpoints"
    steps = list_steps(ckdir)
    if which == "best" and is_checkpoint(ckdir / "best"):
        return ckdir / "best"
    if which in ("best", "last"):
        if steps:
            return steps[-1]
    else:
        try:
            want = int(which)
        except ValueError:
            raise GoldmineError(f"checkpoint: expected best, last or a step number, got {which!r}") from None
        for s in steps:
            if int(s.name.split("-")[1]) == want:
                return s
        raise GoldmineError(f"{p}: no checkpoint for step {want} "
                            f"(have: {', '.join(s.name for s in steps) or 'none'})")
    if (p / "config.json").is_file():
        raise GoldmineError(f"{p}: config.json but no model.safetensors: not a goldmine checkpoint")
    raise GoldmineError(f"{p}: no checkpoints in this directory")


def list_steps(ckdir: Path) -> list[Path]:
    """Complete step checkpoints in a run's checkpoints/ directory, oldest first."""
    if not ckdir.is_dir():
        return []
    found = []
    for d in ckdir.glob("step-*"):
        try:
            step = int(d.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if is_checkpoint(d):
            found.append((step, d))
    return [d for _, d in sorted(found)]


def load_model(ref: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """(GPT, Tokenizer, checkpoint dir) from a run id, run directory or checkpoint directory, or
    a local Hugging Face Llama-family directory; an LSTM instead of the GPT when config.json
    says "arch": "lstm". `tokenizer.chat` is the chat template the model was tuned with
    (`finetune sft`), or None."""
    from goldmine.export.llama import is_hf_model_dir, load_hf_causal_lm
    from goldmine.lstm import LSTM, LSTMConfig
    from goldmine.model import GPT, GPTConfig
    from goldmine.progress import info
    from goldmine.tokenizer import Tokenizer

    if Path(ref).is_dir() and is_hf_model_dir(Path(ref)):
        model, tokenizer, added = load_hf_causal_lm(ref, device)
        if added:
            info(f"{ref}: added goldmine's special tokens {', '.join(added)} to the tokenizer "
                 f"(vocabulary now {tokenizer.vocab_size:,})")
        from goldmine.export.llama import hf_framing

        bos, tokenizer.chat = hf_framing(Path(ref))
        if bos is not None and not added:
            tokenizer.add_bos = bos
        return model, tokenizer, Path(ref)
    path = resolve_checkpoint(ref, which)
    meta = read_json(path / "config.json", "config.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GoldmineError(f"{path / 'config.json'}: not a goldmine checkpoint "
                            f"(expected format {FORMAT!r})")
    arch = meta.get("arch", "gpt")  # checkpoints from before the LSTM have none: GPTs
    if arch == "bert":
        raise GoldmineError(encoder_refusal(path, ckpt=path))
    if arch not in ("gpt", "lstm"):
        raise GoldmineError(f"{path / 'config.json'}: unknown arch {arch!r} (expected gpt or lstm)")
    config_cls, model_cls = (LSTMConfig, LSTM) if arch == "lstm" else (GPTConfig, GPT)
    try:
        cfg = config_cls.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise GoldmineError(f"{path / 'config.json'}: bad model config ({e})") from None
    with torch.device("meta"):
        model = model_cls(cfg)
    if meta.get("quantization"):  # `goldmine quantize`: int8 modules, loaded by their module
        from goldmine.quantize import load_quantized_gpt

        model = load_quantized_gpt(model, path / "model.safetensors", meta["quantization"],
                                   device)
    else:
        model = model.to_empty(device=device)
        load_weights(model, path / "model.safetensors")
    model.eval()
    tokenizer = Tokenizer.load(path / "tokenizer.json")
    # prompts start the way training documents did (a BOS token unless the shards had none)
    tokenizer.add_bos = bool((meta.get("data") or {}).get("bos", True))
    tokenizer.chat = meta.get("chat")
    return model, tokenizer, path


def refuse_quantized(model, ref, doing: str) -> None:
    """A clear error when `model` is an int8 model from `goldmine quantize`, which only serves
    and evaluates: its weights are not fp32 parameters to train or convert."""
    if getattr(model, "quantization", None):
        raise GoldmineError(f"{ref}: an int8 model (`goldmine quantize`) cannot be {doing}; use "
                            "the fp32 run it was quantized from")


def model_arch(model_or_ckpt) -> str:
    """'lstm' for an LSTM, 'bert' for an encoder: a loaded model, or a checkpoint directory whose
    config.json says so; 'gpt' for anything else (a GPT, a Hugging Face directory, no
    checkpoint)."""
    if isinstance(model_or_ckpt, (str, Path)):
        try:
            meta = read_json(Path(model_or_ckpt) / "config.json", "config.json")
        except GoldmineError:
            return "gpt"
        ours = isinstance(meta, dict) and meta.get("format") == FORMAT
        return meta.get("arch", "gpt") if ours else "gpt"
    return getattr(model_or_ckpt.config, "arch", "gpt")


def encoder_refusal(ref, doing: str | None = None, ckpt: Path | None = None) -> str:
    """Why a BERT-style encoder (`pretrain --objective mlm`) is not taken where a language
    model is, and where it is taken instead (`ckpt`: its checkpoint, to name its run)."""
    what = f"cannot be {doing}" if doing else "is not a language model"
    run = "RUN"
    if ckpt is not None and Path(ckpt).parent.name == "checkpoints":
        run = str(Path(ckpt).parent.parent)
    return (f"{ref}: a BERT-style encoder (`pretrain --objective mlm`) {what}: it predicts masked "
            f"tokens and does not generate text; its Hugging Face directory {run}/hf loads with "
            f"transformers' AutoModelForMaskedLM, and `goldmine finetune classify --model {run}` "
            "fine-tunes it")


def refuse_lstm(model_or_ckpt, ref, doing: str, instead: str = "") -> None:
    """A clear error when `model_or_ckpt` is an LSTM (`pretrain --arch lstm`), which trains,
    evaluates and generates like a GPT but has no Llama weights to convert, no KV cache for the
    serving engine and no int8 path; or a BERT-style encoder (`pretrain --objective mlm`),
    which is no language model at all (`instead` is the LSTM's)."""
    if model_arch(model_or_ckpt) == "bert":
        ckpt = model_or_ckpt if isinstance(model_or_ckpt, (str, Path)) else None
        raise GoldmineError(encoder_refusal(ref, doing, ckpt))
    if model_arch(model_or_ckpt) == "lstm":
        raise GoldmineError(f"{ref}: an LSTM language model (`pretrain --arch lstm`) cannot be "
                            f"{doing}{instead}")


def load_weights(model, path: Path) -> None:
    load_weights_dict(model, _load_tensors(path), str(path))


def load_weights_dict(model, sd: dict[str, torch.Tensor], path: str) -> None:
    """Copy `sd` into the model, checking names, shapes and int8-ness (weights of `goldmine
    quantize`); errors name `path`. A GPT's tied head is set to its embedding."""
    tied = getattr(model.config, "tie_embeddings", False)
    if tied and "embed.weight" in sd:
        sd["head.weight"] = sd["embed.weight"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise GoldmineError(f"{path}: weights do not fit the model in config.json "
                            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    for k, v in sd.items():
        want = expected[k]
        if v.shape != want.shape:
            raise GoldmineError(f"{path}: {k} has shape {tuple(v.shape)}, "
                                f"config.json implies {tuple(want.shape)}")
        if (v.dtype == torch.int8) != (want.dtype == torch.int8):
            raise GoldmineError(f"{path}: {k} is {v.dtype}, the model expects {want.dtype}")
    model.load_state_dict(sd, strict=True, assign=False)
    if tied:
        model.head.weight = model.embed.weight


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path, hyper: dict) -> None:
    tensors = _load_tensors(path / "optimizer.safetensors")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = t
    try:
        optimizer.load_state_dict({"state": state, "param_groups": hyper["param_groups"]})
    except (ValueError, KeyError) as e:
        raise GoldmineError(f"{path}: optimizer state does not fit this model ({e})") from None


def load_rng(path: Path) -> None:
    f = path / "rng.safetensors"
    if not f.is_file():
        return
    rng = _load_tensors(f)
    torch.set_rng_state(rng["cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
