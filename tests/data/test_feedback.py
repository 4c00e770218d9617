"""The feedback loop: rated responses -> a chat dataset that `data prepare` and SFT accept."""

from __future__ import annotations

import json

import pytest

from goldmine.data.feedback import from_feedback
from goldmine.data.prepare import prepare_dataset
from goldmine.errors import GoldmineError
from goldmine.serve.store import ServeStore
from goldmine.train.finetune_classify import Skipped
from goldmine.train.finetune_sft import read_conversations

SYSTEM = {"role": "system", "content": "You help customers of a shop."}


def ask(i: int) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": f"Where is my order #{1000 + i}?"}]


@pytest.fixture
def store(tmp_path):
    """Twelve answered requests: 0-7 rated +1, 8 rated -1 with a correction, 9 rated -1, 10 rated
    0, 11 unrated; 0-9 from model "shop", 10-11 from "other"."""
    s = ServeStore(tmp_path / "serve.db")
    for i in range(12):
        s.save_response(f"chatcmpl-{i}", "shop" if i < 10 else "other", None, ask(i),
                        f"Order #{1000 + i} ships on day {i}.")
    for i in range(8):
        s.add_feedback(f"chatcmpl-{i}", 1)
    s.add_feedback("chatcmpl-8", -1, "Order #1008 was cancelled; you have been refunded.")
    s.add_feedback("chatcmpl-9", -1)
    s.add_feedback("chatcmpl-10", 0)
    yield s
    s.close()


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_export_keeps_good_answers_and_corrections(store, tmp_path):
    res = from_feedback(tmp_path / "fb.jsonl", store=store)
    assert res == {"path": str(tmp_path / "fb.jsonl"), "conversations": 9, "corrected": 1,
                   "skipped_by_rating": 2}
    rows = read_jsonl(tmp_path / "fb.jsonl")
    by_id = {r["meta"]["response_id"]: r for r in rows}
    assert set(by_id) == {f"chatcmpl-{i}" for i in range(9)}
    good = by_id["chatcmpl-3"]
    assert good["messages"] == [*ask(3), {"role": "assistant", "content": "Order #1003 ships on day 3."}]
    assert good["meta"] == {"response_id": "chatcmpl-3", "rating": 1, "model": "shop"}
    fixed = by_id["chatcmpl-8"]
    assert fixed["messages"][-1]["content"] == "Order #1008 was cancelled; you have been refunded."
    assert fixed["meta"]["rating"] == -1
    assert not list(tmp_path.glob(".fb.jsonl.*"))  # the temp file was renamed away


def test_min_rating_model_and_use_corrections(store, tmp_path):
    out = tmp_path / "fb.jsonl"
    res = from_feedback(out, min_rating=1, use_corrections=False, store=store)
    assert (res["conversations"], res["corrected"], res["skipped_by_rating"]) == (8, 0, 3)
    res = from_feedback(out, min_rating=0, store=store)
    assert res["conversations"] == 10 and res["skipped_by_rating"] == 1
    assert read_jsonl(out)[-1]["meta"]["model"] == "other"
    res = from_feedback(out, min_rating=-1, model="shop", store=store)
    assert res["conversations"] == 10 and res["skipped_by_rating"] == 0
    rows = read_jsonl(out)
    assert "refunded" in rows[8]["messages"][-1]["content"]
    assert rows[9]["messages"][-1]["content"] == "Order #1009 ships on day 9."


def test_nothing_to_export_is_an_error_that_says_what_there_is(store, tmp_path):
    out = tmp_path / "fb.jsonl"
    with pytest.raises(GoldmineError, match=r"no feedback for model 'other' with rating >= 1; "
                                            r"ratings so far: 1 rated \+0"):
        from_feedback(out, model="other", store=store)
    empty = ServeStore(tmp_path / "empty.db")
    with pytest.raises(GoldmineError, match="rating >= 1; ratings so far: none"):
        from_feedback(out, store=empty)
    empty.close()
    assert not out.exists()
    with pytest.raises(GoldmineError, match="expected a .jsonl"):
        from_feedback(tmp_path / "fb.csv", store=store)


def test_a_malformed_conversation_is_named(store, tmp_path):
    store.save_response("chatcmpl-bad", "shop", None, [{"role": "robot", "content": "hi"}], "x")
    store.add_feedback("chatcmpl-bad", 1)
    with pytest.raises(GoldmineError, match="response chatcmpl-bad: message 0 has role 'robot'"):
        from_feedback(tmp_path / "fb.jsonl", store=store)


def test_default_store_is_the_registry(tmp_path):
    with ServeStore() as s:  # GOLDMINE_HOME/registry.db, set per test by conftest
        s.save_response("chatcmpl-x", "shop", None, ask(0), "Soon.")
        s.add_feedback("chatcmpl-x", 1)
    assert from_feedback(tmp_path / "fb.jsonl")["conversations"] == 1


def test_output_is_a_chat_dataset_for_prepare_and_sft(store, tmp_path):
    out = tmp_path / "fb.jsonl"
    from_feedback(out, min_rating=-1, store=store)
    skipped = Skipped()
    convs = read_conversations(out, skipped)
    assert len(convs) == 11 and not skipped.counts
    assert convs[0][-1] == {"role": "assistant", "content": "Order #1000 ships on day 0."}
    res = prepare_dataset(kind="chat", inputs=[str(out)], out=str(tmp_path / "ds"),
                          val_fraction=0, test_fraction=0)
    assert res["kind"] == "chat" and res["counts"]["kept"] == 11
    rows = read_jsonl(tmp_path / "ds" / "train.jsonl")
    assert len(rows) == 11 and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert len(read_conversations(tmp_path / "ds" / "train.jsonl", Skipped())) == 11
