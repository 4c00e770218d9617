"""ServeStore: API keys (only hashes kept), limits, usage, responses and feedback."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from goldmine.errors import GoldmineError
from goldmine.registry import Registry
from goldmine.serve import commands
from goldmine.serve.store import RateLimited, ServeStore, UnknownResponse, hash_key

T0 = datetime(2026, 3, 10, 23, 58, 0, tzinfo=timezone.utc).timestamp()  # 2 min to midnight


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = ServeStore(tmp_path / "registry.db", clock=clock)
    yield s
    s.close()


def test_key_is_shown_once_and_only_its_hash_is_stored(store, tmp_path):
    key, row = store.create_key("acme", rpm=10)
    assert key.startswith("gm-") and len(key) > 40
    assert row["name"] == "acme" and row["prefix"] == key[3:11] and row["rpm"] == 10
    assert row["revoked"] is None and "hash" not in row and key not in row.values()
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("registry.db*"))
    assert key.encode() not in raw and key[3:].encode() not in raw
    stored = sqlite3.connect(tmp_path / "registry.db").execute("SELECT hash FROM api_keys")
    assert [r[0] for r in stored] == [hash_key(key)]


def test_authenticate_right_wrong_and_revoked(store):
    key, row = store.create_key("acme")
    other, _ = store.create_key("beta")
    assert store.authenticate(key)["id"] == row["id"]
    assert store.authenticate(other)["name"] == "beta"
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate("") is None and store.authenticate(None) is None
    revoked = store.revoke_key("acme")
    assert revoked["id"] == row["id"] and revoked["revoked"] is not None
    assert store.authenticate(key) is None and store.authenticate(other) is not None
    with pytest.raises(GoldmineError, match="already revoked"):
        store.revoke_key(row["id"])
    with pytest.raises(GoldmineError, match="no API key named 'nobody'"):
        store.revoke_key("nobody")


def test_key_names_and_limits_are_checked(store):
    store.create_key("acme")
    with pytest.raises(GoldmineError, match="'acme' exists already"):
        store.create_key("acme")
    with pytest.raises(GoldmineError, match="^rpm: "):
        store.create_key("x", rpm=0)
    with pytest.raises(GoldmineError, match="^tokens_per_day: "):
        store.create_key("x", tokens_per_day=-5)
    store.revoke_key("acme")
    _, again = store.create_key("acme")  # the name is free once the old key is revoked
    assert [k["id"] for k in store.list_keys()] == [again["id"]]
    assert len(store.list_keys(include_revoked=True)) == 2


def test_rpm_is_a_sliding_60_second_window(store, clock):
    _, key = store.create_key("acme", rpm=3)
    for dt in (0, 10, 20):
        clock.t = T0 + dt
        store.check_limits(key)
    clock.t = T0 + 30
    with pytest.raises(RateLimited) as e:
        store.check_limits(key)
    assert e.value.retry_after == 30 and isinstance(e.value, GoldmineError)
    clock.t = T0 + 59.5
    with pytest.raises(RateLimited):  # refused requests do not count, but the window still holds 3
        store.check_limits(key)
    clock.t = T0 + 60  # the request at T0 has left the window
    store.check_limits(key)
    with pytest.raises(RateLimited) as e:
        store.check_limits(key)
    assert e.value.retry_after == 10
    _, free = store.create_key("free")
    for _ in range(100):
        store.check_limits(free)


def test_daily_token_quota_refuses_after_reaching_it_and_resets_at_utc_midnight(store, clock):
    _, key = store.create_key("acme", tokens_per_day=100)
    store.check_limits(key)
    store.record_usage(key, "m", 60, 30)  # 90 used
    store.check_limits(key)
    store.record_usage(key, "m", 5, 5)  # 100 used
    with pytest.raises(RateLimited, match="100 tokens") as e:
        store.check_limits(key)
    assert e.value.retry_after == 120
    # another process (a fresh store) sees the same total from the usage table
    other = ServeStore(store.path, clock=clock)
    with pytest.raises(RateLimited):
        other.check_limits(key)
    other.close()
    clock.t = T0 + 121  # 00:00:01 the next day
    store.check_limits(key)
    store.record_usage(key, "m", 99, 0)
    store.check_limits(key)
    store.record_usage(key, "m", 1, 0)
    with pytest.raises(RateLimited) as e:
        store.check_limits(key)
    assert e.value.retry_after == 24 * 3600 - 1


def test_usage_is_summed_per_day_key_and_model(store, clock):
    _, a = store.create_key("acme")
    _, b = store.create_key("beta")
    store.record_usage(a, "gpt", 10, 5)
    store.record_usage(a, "gpt", 1, 2)
    store.record_usage(a, "bert", 7, 0)
    store.record_usage(None, "gpt", 3, 3)
    clock.t = T0 + 3600  # the next UTC day
    store.record_usage(b, "gpt", 4, 4)
    store.record_usage(a, "gpt", 1, 1)
    rows = store.usage()
    assert [(r["day"], r["key"], r["model"]) for r in rows] == [
        ("2026-03-11", "acme", "gpt"), ("2026-03-11", "beta", "gpt"),
        ("2026-03-10", "(no auth)", "gpt"), ("2026-03-10", "acme", "bert"),
        ("2026-03-10", "acme", "gpt")]
    assert rows[-1] == {"day": "2026-03-10", "key": "acme", "model": "gpt", "requests": 2,
                        "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert [r["day"] for r in store.usage(days=1)] == ["2026-03-11", "2026-03-11"]
    assert len(store.usage(days=2)) == 5
    assert store.usage(key=b["id"]) == store.usage(key="beta") and len(store.usage("beta")) == 1
    assert [r["model"] for r in store.usage(key="acme", days=2)] == ["gpt", "bert", "gpt"]
    with pytest.raises(GoldmineError, match="no API key named 'nobody'"):
        store.usage(key="nobody")


def test_record_usage_from_many_threads_sums_correctly(store):
    _, key = store.create_key("acme", tokens_per_day=10**9)
    store.check_limits(key)  # caches today's total, which record_usage must keep current

    def work():
        for _ in range(50):
            store.record_usage(key, "gpt", 2, 3)
            store.check_limits(key)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (row,) = store.usage()
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (400, 800, 1200)
    assert store._today[("2026-03-10", key["id"])] == 2000


def test_feedback_replaces_and_checks_its_input(store):
    _, key = store.create_key("acme")
    msgs = [{"role": "user", "content": "Where is my order?"}]
    store.save_response("chatcmpl-1", "gpt", key, msgs, "It ships today.")
    store.save_response("chatcmpl-2", "other", None, msgs, "No idea.")
    first = store.add_feedback("chatcmpl-1", 1)
    assert first["id"].startswith("fb-") and first["rating"] == 1 and first["correction"] is None
    second = store.add_feedback("chatcmpl-1", -1, "It shipped yesterday.")
    assert second["id"] != first["id"]
    store.add_feedback("chatcmpl-2", 0)
    rows = store.feedback()
    assert [(r["response_id"], r["rating"]) for r in rows] == [("chatcmpl-1", -1),
                                                                ("chatcmpl-2", 0)]
    assert rows[0]["messages"] == msgs and rows[0]["answer"] == "It ships today."
    assert rows[0]["correction"] == "It shipped yesterday." and rows[0]["model"] == "gpt"
    assert [r["response_id"] for r in store.feedback(min_rating=0)] == ["chatcmpl-2"]
    assert [r["response_id"] for r in store.feedback(model="gpt")] == ["chatcmpl-1"]
    for bad in (2, -2, True, "1", 0.5):
        with pytest.raises(GoldmineError, match="rating: expected -1, 0 or 1"):
            store.add_feedback("chatcmpl-1", bad)
    with pytest.raises(UnknownResponse, match="chatcmpl-404"):
        store.add_feedback("chatcmpl-404", 1)
    assert len(store.feedback()) == 2


def test_store_shares_the_registry_database(home):
    reg = Registry()
    s = ServeStore()
    assert s.path == reg.path == home / "registry.db"
    s.create_key("acme")
    assert reg.list() == []
    s.close()


def test_commands_create_list_revoke_and_usage(tmp_path):
    db = tmp_path / "keys.db"
    made = commands.keys_create("acme", rpm=5, db=db)
    assert made["key"].startswith("gm-") and made["rpm"] == 5
    assert [k["name"] for k in commands.keys_list(db=db)] == ["acme"]
    with ServeStore(db) as s:
        key = s.authenticate(made["key"])
        s.record_usage(key, "gpt", 3, 4)
    assert commands.keys_usage("acme", db=db)[0]["total_tokens"] == 7
    assert commands.keys_revoke("acme", db=db)["revoked"] is not None
    assert commands.keys_list(db=db) == []
    assert len(commands.keys_list(db=db, include_revoked=True)) == 1
