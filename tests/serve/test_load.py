"""Load: 64 concurrent clients against the live server (engine: max_batch 8, max_queue 256)."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time

import httpx
import psutil
import pytest

CLIENTS = 64
REQUESTS_EACH = 10          # per client, after the warm-up round
TIME_LIMIT_S = 30.0         # no new request is started after this
RSS_GROWTH_LIMIT_MB = 200


async def _one(client: httpx.AsyncClient, i: int, n: int) -> None:
    """One chat request, streamed for odd clients and half of the others' requests; raises
    on anything but a complete, well-formed answer."""
    body = {"model": "chat", "messages": [{"role": "user", "content": f"order {i}-{n}?"}],
            "max_tokens": 8 + (i + n) % 9, "temperature": 0.7, "seed": i * 1000 + n}
    if (i + n) % 2:
        async with client.stream("POST", "/v1/chat/completions",
                                 json={**body, "stream": True}) as r:
            if r.status_code != 200:
                raise AssertionError(f"{r.status_code}: {(await r.aread())[:300]!r}")
            events = [line async for line in r.aiter_lines() if line]
        assert events[-1] == "data: [DONE]", events[-3:]
        chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    else:
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
        out = r.json()
        assert out["choices"][0]["finish_reason"] in ("stop", "length")
        assert 0 <= out["usage"]["completion_tokens"] <= body["max_tokens"]


async def _round(url: str, key: str, requests_each: int, deadline: float) -> dict:
    stats = {"ok": 0, "failed": []}

    async def client_loop(client, i):
        for n in range(requests_each):
            if time.monotonic() > deadline:
                return
            try:
                await _one(client, i, n)
                stats["ok"] += 1
            except Exception as e:  # counted, reported by the test
                stats["failed"].append(f"client {i} request {n}: {type(e).__name__}: {e}")

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, i) for i in range(CLIENTS)))
    return stats


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.slow
def test_64_concurrent_clients(live_server):
    """64 clients at once, streaming and non-streaming chat mixed (max_tokens 8-16), for 10
    requests each or 30 s: no request fails (they queue for the engine's 8 slots), the engine
    is idle afterwards, and the server process (this process) grows by less than 200 MB of RSS
    from after a warm-up round (one request per client) to after the load."""
    engine = live_server.models["chat"].engine
    seen = {"batch": 0, "queue": 0}
    stop = threading.Event()

    def watch():
        while not stop.wait(0.002):
            seen["batch"] = max(seen["batch"], engine.batch_size)
            seen["queue"] = max(seen["queue"], engine.queue_depth)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        warm = asyncio.run(_round(live_server.url, live_server.key, 1,
                                  time.monotonic() + TIME_LIMIT_S))
        assert not warm["failed"], warm["failed"][:5]
        before = _rss_mb()
        t0 = time.monotonic()
        load = asyncio.run(_round(live_server.url, live_server.key, REQUESTS_EACH,
                                  t0 + TIME_LIMIT_S))
        elapsed = time.monotonic() - t0
        after = _rss_mb()
    finally:
        stop.set()
        watcher.join(5)
    print(f"\n{load['ok']} requests in {elapsed:.1f} s; largest batch {seen['batch']}, longest "
          f"queue {seen['queue']}; RSS {before:.0f} -> {after:.0f} MB")
    assert not load["failed"], f"{len(load['failed'])} failed: {load['failed'][:5]}"
    assert load["ok"] >= CLIENTS * 2           # each client got at least two requests in
    assert seen["batch"] >= 2                  # requests were batched together ...
    assert seen["batch"] <= 8                  # ... never beyond the engine's slots
    deadline = time.monotonic() + 10
    while (engine.batch_size or engine.queue_depth) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.batch_size == 0 and engine.queue_depth == 0 and engine.error is None
    assert after - before < RSS_GROWTH_LIMIT_MB, f"RSS grew {after - before:.0f} MB"
    r = httpx.post(live_server.url + "/v1/chat/completions", timeout=60,
                   headers={"Authorization": f"Bearer {live_server.key}"},
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                         "max_tokens": 2})
    assert r.status_code == 200
