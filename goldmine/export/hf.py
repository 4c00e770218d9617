"""`goldmine export --format hf` of a GPT: a Hugging Face Llama directory.

    config.json              LlamaConfig with goldmine's dimensions and pad/bos/eos ids
    model.safetensors        the weights under Llama's names (goldmine.export.llama)
    tokenizer.json           goldmine's tokenizer; its post-processor frames a text the way
                             training did (a BOS first, when pretraining put one there)
    tokenizer_config.json    special tokens and, for chat models, the chat template (Jinja)
    generation_config.json   bos/pad ids; the ids that end an answer (EOS, and end-of-turn for
                             chat models); goldmine's default sampling

`transformers.AutoModelForCausalLM` and `AutoTokenizer` load it offline, and so do vLLM and TGI.
The same writer, with `framing="classify"`, prepares a GPT as a backbone for `finetune
classify` (goldmine.hf): there every text also ends with EOS, the token the classification
head reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldmine.files import write_json

# goldmine generate's default sampling ("balanced"), written into generation_config.json
SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.95}


def write_hf_llama(model, tokenizer, meta: dict[str, Any], out: Path,
                   framing: str = "generate", weights: bool = True) -> list[str]:
    """Write `model` (a goldmine GPT) and `tokenizer` into `out` (which exists) as a Llama
    directory; return the file names written. `meta`: the checkpoint's config.json ("data":
    how text was framed, "chat": the chat template). `weights=False` leaves out
    model.safetensors (for an ONNX export, which carries its own)."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.processors import TemplateProcessing

    from goldmine.chat import tokenizer_config
    from goldmine.export.llama import to_hf_config, to_hf_state_dict
    from goldmine.hf import quiet_transformers
    from goldmine.tokenizer import SPECIAL_TOKENS, UNK_TOKEN

    cfg = model.config
    framing_data = meta.get("data") or {}
    bos = bool(framing_data.get("bos", True))
    eos = framing == "classify" and bool(framing_data.get("eos", True))
    pad_t, bos_t, eos_t = SPECIAL_TOKENS[:3]
    ids = tokenizer.special_ids  # name -> id for pad, bos, eos, system, user, assistant, end
    files = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]

    with quiet_transformers():
        to_hf_config(cfg, pad_token_id=ids["pad"], bos_token_id=ids["bos"],
                     eos_token_id=ids["eos"], architectures=["LlamaForCausalLM"],
                     dtype="float32").save_pretrained(out)
    if weights:
        sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_file(to_hf_state_dict(sd, cfg), out / "model.safetensors", metadata={"format": "pt"})
        files.insert(1, "model.safetensors")

    # tokenizer.json: goldmine's, with a post-processor that adds what training added
    tok = HFTokenizer.from_str(tokenizer.to_json())
    single = " ".join([bos_t] * bos + ["$A"] + [eos_t] * eos)
    pair = " ".join([single, "$B:1"] + [eos_t + ":1"] * eos)
    specials = [(bos_t, ids["bos"])] * bos + [(eos_t, ids["eos"])] * eos
    tok.post_processor = TemplateProcessing(single=single, pair=pair,
                                            special_tokens=list(dict(specials).items()))
    tok.save(str(out / "tokenizer.json"))

    chat = meta.get("chat")
    tc = tokenizer_config(chat) if chat else {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos_t, "eos_token": eos_t,
        "pad_token": pad_t, "clean_up_tokenization_spaces": False}
    tc.pop("add_bos_token", None)  # the post-processor decides; an explicit flag would override it
    tc.pop("add_eos_token", None)
    tc["model_max_length"] = cfg.block_size
    tc["model_input_names"] = ["input_ids", "attention_mask"]  # Llama takes no token types
    if tokenizer.unk_id is not None:
        tc["unk_token"] = UNK_TOKEN
    write_json(out / "tokenizer_config.json", tc)

    stop = [ids["eos"], ids["end"]] if chat else ids["eos"]
    write_json(out / "generation_config.json", {
        "bos_token_id": ids["bos"], "eos_token_id": stop, "pad_token_id": ids["pad"],
        **SAMPLING, "transformers_version": _transformers_version()})
    return files


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
