"""The web playground (`GET /` of `goldmine serve`) driven in headless Chromium with Playwright.

Uses the system Chromium (/usr/bin/chromium); Playwright never downloads a browser here. The
module is skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = pytest.mark.slow

# Playwright adds --headless and manages a fresh --user-data-dir itself for launch().
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
WAIT_MS = 20_000  # default bound for every Playwright wait
ANSWER_MS = 30_000  # a whole streamed answer


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                              timeout=30_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 820})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def _get(url: str, key: str | None) -> tuple[int, dict]:
    """GET straight from the server (no proxy), returning (status, JSON body)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _option_values(page, select: str) -> list[str]:
    return page.eval_on_selector_all(f"{select} option", "els => els.map(e => e.value)")


def _open(page, server, key: str | None = None):
    """Load the page, enter the API key and wait until the model list is filled."""
    page.goto(server.url + "/")
    page.fill("#api-key", server.key if key is None else key)
    page.wait_for_function(
        "name => [...document.querySelectorAll('#model option')].some(o => o.value === name)",
        arg=server.chat_model, timeout=WAIT_MS)
    page.wait_for_selector("#error", state="hidden")


def _chat(page, server, text: str):
    """Send one chat message; return (request, the finished assistant bubble locator)."""
    n = page.locator("#messages .msg.assistant").count()
    page.fill("#chat-input", text)
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as req:
        page.click("#send")
    bubble = page.locator("#messages .msg.assistant").nth(n)
    bubble.and_(page.locator("[data-done=true]")).wait_for(timeout=ANSWER_MS)
    return req.value, bubble


def test_page_loads_and_lists_models(page, live_server):
    page.goto(live_server.url + "/")
    assert "goldmine" in page.locator("header h1").inner_text()
    page.fill("#api-key", live_server.key)
    page.wait_for_function(
        "name => [...document.querySelectorAll('#model option')].some(o => o.value === name)",
        arg=live_server.chat_model)
    page.wait_for_selector("#error", state="hidden")

    status, models = _get(live_server.url + "/v1/models", live_server.key)
    assert status == 200
    kinds = {m["id"]: m.get("kind") for m in models["data"]}
    generative = sorted(i for i, k in kinds.items() if k in ("chat", "completion"))
    classify = sorted(i for i, k in kinds.items() if k == "classify")
    assert sorted(_option_values(page, "#model")) == generative
    assert sorted(_option_values(page, "#classify-model")) == classify
    assert live_server.classify_model in classify
    assert live_server.embed_model not in _option_values(page, "#model")
    # options are grouped by kind
    assert page.locator(f"#model optgroup[label=chat] option[value='{live_server.chat_model}']").count() == 1
    for panel in ("#chat-panel", "#classify-panel"):
        assert page.locator(panel).is_visible()
    # the default answer length fits the selected model's context
    page.select_option("#model", live_server.chat_model)
    ctx = next(m.get("context_length") for m in models["data"] if m["id"] == live_server.chat_model)
    if ctx:
        assert 0 < int(page.input_value("#max-tokens")) < ctx

    # the key is remembered in localStorage across a reload
    page.reload()
    assert page.input_value("#api-key") == live_server.key
    page.wait_for_function(
        "name => [...document.querySelectorAll('#model option')].some(o => o.value === name)",
        arg=live_server.chat_model)


def test_chat_streams_tokens_and_shows_stats(page, live_server):
    _open(page, live_server)
    page.select_option("#model", live_server.chat_model)
    page.fill("#max-tokens", "48")
    # Record every distinct length of the assistant text while it streams.
    page.evaluate("""() => {
        window.__lengths = [];
        const box = document.querySelector('#messages');
        new MutationObserver(() => {
            const c = box.querySelector('.msg.assistant .content');
            if (!c) return;
            const n = c.textContent.length, l = window.__lengths;
            if (!l.length || l[l.length - 1] !== n) l.push(n);
        }).observe(box, {subtree: true, childList: true, characterData: true});
    }""")
    hostile = "<img src=x onerror=\"window.__pwned=1\"> hello <b>there</b>"
    req, bubble = _chat(page, live_server, hostile)

    body = req.post_data_json
    assert req.headers.get("authorization") == f"Bearer {live_server.key}"
    assert body["model"] == live_server.chat_model
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 48 and body["temperature"] == pytest.approx(0.7)
    assert body["messages"][-1] == {"role": "user", "content": hostile}

    answer = bubble.locator(".content").inner_text()
    assert answer.strip(), "the assistant bubble stayed empty"
    lengths = [n for n in page.evaluate("window.__lengths") if n > 0]
    assert len(set(lengths)) >= 2, f"text did not grow while streaming: {lengths}"
    stats = bubble.locator(".stats").inner_text()
    assert re.search(r"\d+ tokens · [\d.]+ tok/s · TTFT \d+ ms", stats), stats
    assert int(stats.split(" tokens")[0]) <= 48
    assert page.is_enabled("#send") and not page.is_enabled("#stop")

    # untrusted text is shown as text, never parsed as HTML
    assert page.locator("#messages .msg.user .content").first.inner_text() == hostile
    assert page.locator("#messages img, #messages b").count() == 0
    assert page.evaluate("window.__pwned === undefined")

    # a second turn carries the conversation so far
    req2, _ = _chat(page, live_server, "and again")
    roles = [m["role"] for m in req2.post_data_json["messages"]]
    assert roles[-3:] == ["user", "assistant", "user"]
    assert req2.post_data_json["messages"][-2]["content"] == answer


def test_feedback_thumbs_up_and_correction(page, live_server):
    _open(page, live_server)
    page.select_option("#model", live_server.chat_model)
    page.fill("#max-tokens", "16")
    _, bubble = _chat(page, live_server, "Hi")
    response_id = bubble.get_attribute("data-response-id")
    assert response_id and response_id.startswith("chatcmpl-")

    with page.expect_response(lambda r: r.url.endswith("/v1/feedback")) as resp_info:
        bubble.locator(".thumb-up").click()
    resp = resp_info.value
    assert resp.status == 200, resp.text()
    assert resp.request.post_data_json == {"response_id": response_id, "rating": 1,
                                           "correction": None}
    assert resp.json()["rating"] == 1
    bubble.locator(".thanks", has_text="Thanks").wait_for()
    assert not bubble.locator(".thumb-up").is_enabled()
    assert not bubble.locator(".thumb-down").is_enabled()

    # "correct it" on the next answer sends a thumbs down with the corrected text
    _, bubble2 = _chat(page, live_server, "Again")
    rid2 = bubble2.get_attribute("data-response-id")
    assert rid2 and rid2 != response_id
    bubble2.locator(".correct").click()
    bubble2.locator(".correction-input").fill("A better answer.")
    with page.expect_response(lambda r: r.url.endswith("/v1/feedback")) as resp_info:
        bubble2.locator(".correction-submit").click()
    resp = resp_info.value
    assert resp.status == 200, resp.text()
    assert resp.request.post_data_json == {"response_id": rid2, "rating": -1,
                                           "correction": "A better answer."}
    bubble2.locator(".thanks", has_text="Thanks").wait_for()
    assert not bubble2.locator(".thumb-down").is_enabled()


def test_classify_shows_label_and_probabilities(page, live_server):
    _open(page, live_server)
    page.select_option("#classify-model", live_server.classify_model)
    page.fill("#classify-input", "I love this product, it works great!")
    with page.expect_response(lambda r: r.url.endswith("/v1/classify")) as resp_info:
        page.click("#classify-btn")
    resp = resp_info.value
    assert resp.status == 200, resp.text()
    assert resp.request.post_data_json == {"model": live_server.classify_model,
                                           "input": "I love this product, it works great!"}
    item = resp.json()["data"][0]

    page.wait_for_selector("#classify-result .label")
    assert page.inner_text("#classify-result .label") == item["label"]
    rows = page.eval_on_selector_all(
        "#classify-result .bar-row", "els => els.map(e => [e.dataset.label, Number(e.dataset.p)])")
    assert {name for name, _ in rows} == set(item["probabilities"])
    assert len(rows) >= 2
    probs = [p for _, p in rows]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-3)
    assert rows[0][0] == item["label"]
    _, models = _get(live_server.url + "/v1/models", live_server.key)
    labels = next(m.get("labels") for m in models["data"] if m["id"] == live_server.classify_model)
    if labels:
        assert {name for name, _ in rows} == set(labels)


def test_wrong_key_shows_server_error(page, live_server):
    status, body = _get(live_server.url + "/v1/models", "sk-wrong-key")
    assert status == 401
    message = body["error"]["message"]

    _open(page, live_server)
    page.fill("#api-key", "sk-wrong-key")  # the model list reloads with the wrong key
    page.wait_for_selector("#error", state="visible")
    text = page.inner_text("#error")
    assert message in text and "401" in text

    # chatting with the wrong key: the banner comes back and the turn is undone
    page.click("#error-close")
    page.wait_for_selector("#error", state="hidden")
    page.fill("#chat-input", "hello")
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as resp_info:
        page.click("#send")
    assert resp_info.value.status == 401
    page.wait_for_selector("#error", state="visible")
    assert message in page.inner_text("#error")
    assert page.locator("#messages .msg").count() == 0
    assert page.input_value("#chat-input") == "hello"

    # the right key clears it
    page.fill("#api-key", live_server.key)
    page.wait_for_selector("#error", state="hidden")


def test_business_plan_page(page, live_server):
    """The plan tab: prefilled from the example, recalculated on change with the numbers of
    `goldmine cost plan` (run_plan on the very body the page sent), errors naming the field."""
    from goldmine.cost.plan import EXAMPLE_PLAN, money, run_plan

    def field(name: str) -> str:
        return f"#plan-form input[data-field='{name}']"

    def calculated(action) -> dict:
        """Do `action`; return run_plan of the plan the page then sent, once the page shows it."""
        with page.expect_response(lambda r: r.url.endswith("/v1/cost/plan")) as resp_info:
            action()
        resp = resp_info.value
        assert resp.status == 200, resp.text()
        expected = run_plan(resp.request.post_data_json, charts=False)
        page.wait_for_function("([v, n]) => document.querySelector('#plan-verdict').dataset"
                               ".verdict === v && document.querySelectorAll('#plan-pnl tr')"
                               ".length === n",
                               arg=[expected["verdict"], len(expected["months"])])
        return expected

    _open(page, live_server)
    assert not page.locator("#plan-main").is_visible()
    expected = calculated(lambda: page.click("[data-testid=plan-tab]"))
    assert page.locator("#plan-main").is_visible() and not page.locator("#main").is_visible()
    assert page.url.endswith("#plan")

    # prefilled from the example plan, percentages as percentages
    for name, value in (("users.start", "50"), ("users.growth", "15"), ("users.churn", "2"),
                        ("pricing.per_seat", "30"), ("pricing.per_1m_tokens", ""),
                        ("serving.per_1m_output_tokens", "0.28"), ("fixed", "42300"),
                        ("training.retrain_every_months", "3"), ("horizon_months", "36")):
        assert page.input_value(field(name)) == value, name
    cli = run_plan(EXAMPLE_PLAN, charts=False)
    assert expected["verdict"] == cli["verdict"]
    assert expected["summary"]["final_cash"] == pytest.approx(cli["summary"]["final_cash"])
    stats = page.inner_text("#plan-stats")
    assert money(expected["summary"]["final_cash"]) in stats
    assert f"{expected['summary']['gross_margin']:.0%}" in stats
    assert page.locator("#plan-reasons li").count() == len(expected["reasons"])
    assert page.locator("#plan-sensitivity tr").count() == len(expected["sensitivity"])
    # the chart: revenue and costs, one point a month
    points = page.get_attribute("#plan-chart-pnl polyline.revenue", "points")
    assert len(points.split()) == 36
    assert page.locator("#plan-chart-cash polyline").count() == 1

    # a price far below the serving cost: every user loses money (recalculated on input)
    expected = calculated(lambda: page.fill(field("pricing.per_seat"), "0.01"))
    assert expected["inputs"]["pricing"]["per_seat"] == 0.01
    assert expected["verdict"] == "bubble"
    assert "bubble" in page.get_attribute("#plan-verdict", "class")

    # the P&L has a row per month of the horizon (the Calculate button)
    page.fill(field("horizon_months"), "12")
    expected = calculated(lambda: page.click("[data-testid=plan-calculate]"))
    assert len(expected["months"]) == 12
    last = page.locator("#plan-pnl tr").last.locator("td")
    assert last.first.inner_text() == "12"
    assert last.last.inner_text() == money(expected["months"][-1]["cash"])

    # a bad value: the server's error names the field, and the page marks it
    with page.expect_response(lambda r: r.url.endswith("/v1/cost/plan")) as resp_info:
        page.fill(field("users.churn"), "150")
    assert resp_info.value.status == 400
    page.wait_for_selector("#error", state="visible")
    assert "users.churn" in page.inner_text("#error")
    assert "invalid" in page.get_attribute(field("users.churn"), "class")
    calculated(lambda: page.fill(field("users.churn"), "2"))
    page.wait_for_selector("#error", state="hidden")
    assert page.locator("#plan-form input.invalid").count() == 0
