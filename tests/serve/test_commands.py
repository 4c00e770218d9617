"""The serving commands as a user runs them: `goldmine serve` (a real process, stopped with
Ctrl-C), `goldmine chat` (local and against a server), `goldmine keys`, `data from-feedback`."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from goldmine.cli import main
from goldmine.serve.server import free_port
from goldmine.serve.terminal import chat


def scripted(lines):
    """A read() that answers the prompts with `lines`, then Ctrl-D."""
    it = iter(lines)

    def read(prompt):
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None
    return read


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_goldmine_serve_runs_until_ctrl_c(served, tmp_path, stop):
    port = free_port()
    env = {**os.environ, "GOLDMINE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "goldmine", "serve", "--model", f"chat={served['chat']}",
         "--model", f"sentiment={served['classifier']}", "--embeddings", "none",
         "--no-auth", "--port", str(port), "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
        models = httpx.get(url + "/v1/models").json()["data"]
        assert {m["id"]: m["kind"] for m in models} == {"chat": "chat", "sentiment": "classify"}
        r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 5
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "--no-auth" in out and "WARNING" in out     # said loudly
    assert f"{url}/v1" in out and "Traceback" not in out
    assert "served 2 requests" in out                  # /v1/models and the chat completion
    from goldmine.registry import Registry

    run = Registry(tmp_path / "home" / "registry.db").list(command="serve")[0]
    assert run["status"] == "completed" and run["metrics"]["requests"] == 2
    assert 0 < run["metrics"]["completion_tokens"] <= 5 and len(run["parents"]) == 2


def test_chat_in_the_terminal_with_a_local_model(served):
    said = []
    res = chat(model=served["chat"], device="cpu", max_tokens=6, temperature=0.0,
               read=scripted(["hello", "/reset", "again", "/exit", "never read"]),
               write=said.append)
    out = "".join(said)
    assert res["turns"] == 2
    assert out.count("assistant> ") == 2 and "(new conversation)" in out
    assert "tokens" in out


def test_chat_against_a_running_server(live_server):
    said = []
    res = chat(url=live_server.url, api_key=live_server.key, max_tokens=5, seed=1,
               read=scripted(["where is my order?"]), write=said.append)
    assert res == {"turns": 1, "model": "chat"}
    out = "".join(said)
    assert "chatting with chat" in out and "assistant> " in out and "tokens" in out


def test_chat_names_what_is_wrong(live_server):
    from goldmine.errors import GoldmineError

    with pytest.raises(GoldmineError, match="serves no model 'nope'"):
        chat(url=live_server.url, api_key=live_server.key, model="nope", read=scripted([]),
             write=lambda s: None)
    with pytest.raises(GoldmineError, match="401: invalid API key"):
        chat(url=live_server.url, api_key="gm-wrong", read=scripted([]), write=lambda s: None)


def test_keys_commands_and_feedback_export(tmp_path, capsys, live_server):
    db = str(tmp_path / "keys.db")
    assert main(["keys", "create", "--name", "acme", "--rpm", "5", "--db", db, "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("gm-") and created["rpm"] == 5
    assert main(["keys", "list", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "acme" in listed and created["key"] not in listed
    assert main(["keys", "create", "--name", "acme", "--db", db]) != 0   # name taken
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "revoke", "acme", "--db", db]) == 0
    assert "revoked acme" in capsys.readouterr().out
    assert main(["keys", "list", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"] == []

    # a rated answer from the live server becomes a chat dataset
    h = {"Authorization": f"Bearer {live_server.key}"}
    r = httpx.post(live_server.url + "/v1/chat/completions", headers=h, json={
        "model": "chat", "messages": [{"role": "user", "content": "refund please"}],
        "max_tokens": 4}).json()
    assert httpx.post(live_server.url + "/v1/feedback", headers=h, json={
        "response_id": r["id"], "rating": 1, "correction": "Your refund is on its way."}
    ).status_code == 200
    out = tmp_path / "liked.jsonl"
    db = str(live_server.store.path)
    assert main(["data", "from-feedback", "--out", str(out), "--db", db, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["conversations"] >= 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [row for row in rows if row["meta"]["response_id"] == r["id"]]
    assert mine[0]["messages"] == [{"role": "user", "content": "refund please"},
                                   {"role": "assistant", "content": "Your refund is on its way."}]
    assert main(["keys", "usage", "--db", db, "--key", "tests", "--json"]) == 0
    usage = json.loads(capsys.readouterr().out)["usage"]
    assert sum(u["requests"] for u in usage) >= 1


def test_serve_defaults_to_the_latest_chat_and_classify_runs(served, monkeypatch):
    from goldmine.config import ServeConfig
    from goldmine.errors import GoldmineError
    from goldmine.serve.server import default_models, load_models

    with pytest.raises(GoldmineError, match="nothing to serve"):
        load_models(ServeConfig())                      # an empty registry
    monkeypatch.setenv("GOLDMINE_HOME", str(served["root"] / "home"))
    assert default_models() == [f"chat={served['chat']}", f"classifier={served['classifier']}"]
