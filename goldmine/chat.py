"""The chat template: the one way a conversation becomes tokens, for training (`finetune sft`),
generation, evaluation, the server and the Hugging Face export alike.

    <|bos|><|system|>You help.<|end|><|user|>Hi<|end|><|assistant|>Hello!<|end|><|eos|>

Each message is its role token, its text and the end-of-turn token. A finished conversation ends
with EOS; a prompt for generation ends with the assistant's role token instead, and generation
stops at end-of-turn (or EOS). Training puts the loss on what the model must produce: each
assistant message's text and its end-of-turn, and the EOS that closes the conversation.

The template is stored with every chat checkpoint twice, meaning the same thing: in goldmine's
config.json (`"chat"`) and as the Jinja `chat_template` of a `tokenizer_config.json`, so that
`transformers.AutoTokenizer.apply_chat_template` renders exactly the ids goldmine trained on (a
test checks both agree).
"""

from __future__ import annotations

from typing import Any

from goldmine.errors import GoldmineError
from goldmine.tokenizer import END_OF_TURN, ROLE_TOKENS, SPECIAL_TOKENS

NAME = "goldmine-chat/1"
ROLES = tuple(ROLE_TOKENS)  # system, user, assistant
# the Jinja form of `render`, for Hugging Face tokenizers (and so vLLM, TGI, llama.cpp)
JINJA = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)


def template_meta() -> dict[str, Any]:
    """What a checkpoint's config.json records about its chat template."""
    return {"name": NAME, "jinja": JINJA, "roles": dict(ROLE_TOKENS), "end_of_turn": END_OF_TURN,
            "stop": [END_OF_TURN, SPECIAL_TOKENS[2]]}


def tokenizer_config(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tokenizer_config.json for transformers' PreTrainedTokenizerFast, with the template."""
    meta = meta or template_meta()
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIAL_TOKENS[1],
            "eos_token": SPECIAL_TOKENS[2], "pad_token": SPECIAL_TOKENS[0],
            "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
            "model_max_length": 1_000_000, "chat_template": meta["jinja"]}


def check_messages(messages: Any, where: str = "messages") -> list[dict[str, str]]:
    """A conversation as a list of {role, content}, or a GoldmineError naming what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise GoldmineError(f"{where}: expected a non-empty list of messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise GoldmineError(f"{where}: message {i} is a {type(m).__name__}, not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise GoldmineError(f"{where}: message {i} has role {role!r} (expected one of "
                                f"{', '.join(ROLES)})")
        if not isinstance(content, str):
            raise GoldmineError(f"{where}: message {i} has no text content")
        out.append({"role": role, "content": content})
    return out


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False
           ) -> tuple[list[int], list[bool]]:
    """(token ids, loss mask) of a conversation; mask[i] says whether ids[i] is a token the model
    is trained to produce (assistant text, its end-of-turn, the closing EOS).

    Pieces are encoded one by one: special tokens split the text for the tokenizer anyway, so
    this equals encoding the rendered string in one go (see `render_text`).
    """
    roles, end = tokenizer.role_ids, tokenizer.token_to_id(END_OF_TURN)
    ids, mask = [tokenizer.bos_id], [False]
    for m in messages:
        text = tokenizer.encode(m["content"])
        train = m["role"] == "assistant"
        ids += [roles[m["role"]], *text, end]
        mask += [False] + [train] * (len(text) + 1)
    if add_generation_prompt:
        ids.append(roles["assistant"])
        mask.append(False)
    else:
        ids.append(tokenizer.eos_id)
        mask.append(messages[-1]["role"] == "assistant")
    return ids, mask


def render_text(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The conversation as text with the special tokens written out (what JINJA produces)."""
    parts = [SPECIAL_TOKENS[1]]
    parts += [f"{ROLE_TOKENS[m['role']]}{m['content']}{END_OF_TURN}" for m in messages]
    parts.append(ROLE_TOKENS["assistant"] if add_generation_prompt else SPECIAL_TOKENS[2])
    return "".join(parts)


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The ids that ask the model for the next assistant message."""
    return render(tokenizer, messages, add_generation_prompt=True)[0]


def stop_ids(tokenizer) -> set[int]:
    """Generation of an assistant message ends at either of these."""
    return {tokenizer.token_to_id(END_OF_TURN), tokenizer.eos_id}
