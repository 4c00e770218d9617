"""The chat template: ids, the loss mask, and agreement between training and inference."""

import pytest

from goldmine import chat
from goldmine.errors import GoldmineError
from goldmine.tokenizer import Tokenizer

CONVERSATION = [
    {"role": "system", "content": "You help customers of an online shop."},
    {"role": "user", "content": "Where is my order #A1234?"},
    {"role": "assistant", "content": "It shipped yesterday; it arrives on Friday."},
    {"role": "user", "content": "我可以退货吗？"},
    {"role": "assistant", "content": "可以，30 天内免费退货。"},
]


@pytest.fixture(scope="module")
def tok(workspace):
    return Tokenizer.load(workspace["tokenizer"])


def test_render_is_the_template_and_equals_encoding_the_rendered_text(tok):
    ids, mask = chat.render(tok, CONVERSATION)
    text = chat.render_text(CONVERSATION)
    assert text.startswith("<|bos|><|system|>You help") and text.endswith("<|end|><|eos|>")
    assert "<|user|>Where is my order #A1234?<|end|><|assistant|>It shipped" in text
    assert ids == tok.encode(text)  # piecewise encoding = encoding the whole string
    assert tok.decode(ids) == text
    assert len(mask) == len(ids)


def test_the_loss_mask_covers_exactly_the_assistant_tokens(tok):
    ids, mask = chat.render(tok, CONVERSATION)
    end, eos = tok.token_to_id("<|end|>"), tok.eos_id
    trained = [i for i, m in zip(ids, mask) if m]
    expected = []
    for m in CONVERSATION:
        if m["role"] == "assistant":
            expected += tok.encode(m["content"]) + [end]
    assert trained == expected + [eos]  # each answer, its end-of-turn, and the closing EOS
    # nothing of the system prompt, the user turns or the role tokens is trained on
    for i, m in zip(ids, mask):
        if i in tok.role_ids.values() or i == tok.bos_id:
            assert not m
    # mask per token: the assistant's spans are exactly where the mask is on
    spans, pos = [], 1
    for msg in CONVERSATION:
        n = len(tok.encode(msg["content"]))
        spans.append((msg["role"], pos + 1, pos + 1 + n + 1))  # text and end-of-turn
        pos += n + 2
    for role, a, b in spans:
        assert all(mask[a:b]) == (role == "assistant") and any(mask[a:b]) == (role == "assistant")


def test_a_conversation_ending_with_a_user_turn_trains_no_eos(tok):
    ids, mask = chat.render(tok, CONVERSATION[:4])
    assert ids[-1] == tok.eos_id and not mask[-1]


def test_inference_prompt_is_the_training_prefix(tok):
    """What generation feeds the model is exactly what training saw before each answer."""
    ids, mask = chat.render(tok, CONVERSATION)
    for k in (2, 4):  # before each assistant message
        prompt = chat.prompt_ids(tok, CONVERSATION[:k])
        assert ids[:len(prompt)] == prompt
        assert prompt[-1] == tok.role_ids["assistant"]
        assert mask[len(prompt)] and not mask[len(prompt) - 1]  # the answer starts right after
    assert chat.stop_ids(tok) == {tok.token_to_id("<|end|>"), tok.eos_id}


def test_the_jinja_template_renders_the_same_text():
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    for gen in (False, True):
        convo = CONVERSATION if not gen else CONVERSATION[:4]
        out = env.from_string(chat.JINJA).render(messages=convo, add_generation_prompt=gen,
                                                 bos_token="<|bos|>", eos_token="<|eos|>")
        assert out == chat.render_text(convo, add_generation_prompt=gen)


@pytest.mark.parametrize("bad,match", [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "robot", "content": "x"}], "message 0 has role 'robot'"),
    ([{"role": "user"}], "message 0 has no text content"),
    ([{"role": "user", "content": "a"}, "b"], "message 1 is a str"),
])
def test_bad_messages_are_named(bad, match):
    with pytest.raises(GoldmineError, match=match):
        chat.check_messages(bad, "chats.jsonl:3")
