"""Serving throughput and latency: `goldmine serve` against `transformers serve`, same run.

    python bench/serve.py                    # both servers, 16 clients, 64 requests
    python bench/serve.py --skip-hf          # goldmine only
    python bench/serve.py --rounds 3         # alternate the servers 3 times: steadier on a busy box

1. The model: a 6-layer, 384-wide Llama (6 heads, SwiGLU 1024, vocab 8192, fp32, random weights
   from a fixed seed; the one bench/decode.py times) with a byte-level BPE tokenizer of 8192
   tokens trained on goldmine's generated sample corpus and goldmine's chat template, saved as
   ONE local Hugging Face directory (config.json, model.safetensors, generation_config.json,
   tokenizer.json, tokenizer_config.json). Both servers stop at the same tokens (<|end|>, EOS).
2. Each server in turn (never both at once) is started as a subprocess on 127.0.0.1 —
   `python -m goldmine serve --model bench=DIR --no-auth` and
   `transformers serve --continuous-batching DIR` — polled on /health until ready, warmed up with
   2 requests, then driven by the same workload: `--clients` concurrent streaming clients
   (asyncio + httpx) send `--requests` chat completions in total, each a distinct prompt of
   `--prompt-tokens` tokens (chat template included) asking for `--max-tokens` tokens, greedy
   by default (with these random weights both servers then give all 64 tokens of every request;
   `--temperature 1` measures sampling instead), `stream: true` with
   `stream_options.include_usage`.
3. Per server: generated tokens / wall time (tokens/s), time to the first content token per
   request (p50, p99), errors (non-200, exceptions, empty streams; a stream without
   `data: [DONE]` is an error for goldmine and a recorded fault for transformers), mean tokens
   per request (so that the comparison is visibly like for like), and four protocol checks:
   GET /v1/models lists the model, streams end with [DONE], include_usage gives a final usage
   chunk, responses echo the requested model name.

Prints one JSON object; `ratio` = goldmine tokens/s / transformers tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GOALS = {"ratio": 1.5, "goldmine_p50_ttft_ms": 100, "errors": 0}
SERVED_NAME = "bench"
CHECKS = ("models_endpoint", "done_marker", "include_usage", "model_name_echo")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- the model
def build_model_dir(out: Path, seed: int = 0) -> tuple[Path, object]:
    """The benchmark model as one local HF Llama directory; returns (dir, goldmine Tokenizer)."""
    from decode import build_models

    from goldmine.chat import tokenizer_config
    from goldmine.data.sample import generate_sample_data
    from goldmine.tokenizer import END_OF_TURN, build_bpe

    sample = generate_sample_data(out.parent / "sample", seed=seed, scale=1.0)
    text = Path(sample["files"]["corpus.txt"]["path"]).read_text(encoding="utf-8")
    tok = build_bpe(iter(text.split("\n\n")), vocab_size=8192)
    out.mkdir(parents=True, exist_ok=True)
    _, hf = build_models(seed, vocab_size=8192, check=True)
    end = tok.token_to_id(END_OF_TURN)
    for c in (hf.config, hf.generation_config):
        c.bos_token_id, c.pad_token_id = tok.bos_id, tok.pad_id
    hf.config.eos_token_id = tok.eos_id
    hf.generation_config.eos_token_id = [tok.eos_id, end]   # what goldmine's chat stops at
    hf.save_pretrained(out)
    tok.save(out)
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2),
                                               encoding="utf-8")
    return out, tok


def make_prompts(tok, n: int, prompt_tokens: int, seed: int = 0) -> list[str]:
    """n distinct user messages whose chat prompt (template included) is prompt_tokens long."""
    import random

    from goldmine.chat import prompt_ids
    from goldmine.data.sample import generate_sample_data

    with tempfile.TemporaryDirectory() as d:
        sample = generate_sample_data(d, seed=seed + 1, scale=0.2)
        docs = Path(sample["files"]["corpus.txt"]["path"]).read_text(encoding="utf-8").split("\n\n")
    random.Random(seed).shuffle(docs)
    overhead = len(prompt_ids(tok, [{"role": "user", "content": ""}]))
    want = prompt_tokens - overhead
    prompts: list[str] = []
    seen = set()
    for doc in docs:
        ids = tok.encode(doc)
        for start in range(0, max(0, len(ids) - want), want):
            text = tok.decode(ids[start:start + want]).strip()
            msgs = [{"role": "user", "content": text}]
            if "\ufffd" in text or text in seen or len(prompt_ids(tok, msgs)) != prompt_tokens:
                continue
            seen.add(text)
            prompts.append(text)
            if len(prompts) == n:
                return prompts
    raise SystemExit(f"error: could not make {n} prompts of {prompt_tokens} tokens")


# -------------------------------------------------------------------------------- the servers
def free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"error: no free port in {start}..{start + 199}")


class Server:
    """A server subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], port: int, logfile: Path, env: dict):
        self.name, self.cmd, self.port, self.logfile = name, cmd, port, logfile
        self.base = f"http://127.0.0.1:{port}"
        log(f"starting {name}: {' '.join(cmd)}")
        self._log = open(logfile, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, cwd=str(logfile.parent))

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> float:
        import httpx

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: {self.name} exited with {self.proc.returncode} while "
                                 f"starting:\n{self.tail()}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"error: {self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()


# ------------------------------------------------------------------------------- the workload
async def one_request(client, url: str, body: dict) -> dict:
    """Send one streaming chat completion; what came back."""
    r = {"status": None, "error": None, "ttft": None, "content_chunks": 0, "usage": None,
         "usage_chunk": False, "done": False, "models": set(), "finish": None, "text": ""}
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as resp:
            r["status"] = resp.status_code
            if resp.status_code != 200:
                r["error"] = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
                return r
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    r["done"] = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    r["error"] = f"error chunk: {str(chunk['error'])[:200]}"
                    continue
                if chunk.get("model") is not None:
                    r["models"].add(chunk["model"])
                if chunk.get("usage"):
                    r["usage"] = chunk["usage"]
                    r["usage_chunk"] = r["usage_chunk"] or not chunk.get("choices")
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if r["ttft"] is None:
                            r["ttft"] = time.perf_counter() - t0
                        r["content_chunks"] += 1
                        r["text"] += content
                    if choice.get("finish_reason"):
                        r["finish"] = choice["finish_reason"]
    except Exception as e:  # noqa: BLE001 - every failure is a counted error
        r["error"] = f"{type(e).__name__}: {e}"
    r["elapsed"] = time.perf_counter() - t0
    return r


def tokens_of(r: dict) -> int:
    """Generated tokens of a request: the usage the server reported, else content chunks."""
    if r["usage"] and r["usage"].get("completion_tokens") is not None:
        return int(r["usage"]["completion_tokens"])
    return r["content_chunks"]


async def drive(base: str, model: str, prompts: list[str], clients: int, max_tokens: int,
                temperature: float, timeout: float) -> tuple[list[dict], float]:
    import httpx

    url = base + "/v1/chat/completions"
    todo = list(enumerate(prompts))
    results: list[dict | None] = [None] * len(prompts)

    async def client_loop(client):
        while todo:
            i, prompt = todo.pop(0)
            body = {"model": model, "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens, "temperature": temperature, "stream": True,
                    "stream_options": {"include_usage": True}}
            results[i] = await one_request(client, url, body)

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(min(clients, len(prompts)))))
        wall = time.perf_counter() - t0
    return [r for r in results if r is not None], wall


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def summarize(name: str, results: list[dict], wall: float, model: str, hf: bool) -> dict:
    errors, faults_done = [], 0
    for r in results:
        if r["error"] is None and r["content_chunks"] == 0:
            r["error"] = f"empty stream (finish_reason {r['finish']!r})"
        if r["error"] is None and not r["done"]:
            if hf:
                faults_done += 1     # a known transformers fault, not an error: content came
            else:
                r["error"] = "stream ended without data: [DONE]"
        if r["error"] is not None:
            errors.append(r["error"])
    ok = [r for r in results if r["error"] is None]
    tokens = [tokens_of(r) for r in ok]
    ttft = [r["ttft"] * 1000 for r in ok if r["ttft"] is not None]
    finish: dict[str, int] = {}
    for r in ok:
        finish[str(r["finish"])] = finish.get(str(r["finish"]), 0) + 1
    prompt_tokens = [r["usage"]["prompt_tokens"] for r in ok
                     if r["usage"] and r["usage"].get("prompt_tokens") is not None]
    out = {
        "tokens_per_s": round(sum(tokens) / wall, 1) if wall > 0 else None,
        "p50_ttft_ms": round(pct(ttft, 50), 1) if ttft else None,
        "p99_ttft_ms": round(pct(ttft, 99), 1) if ttft else None,
        "mean_ttft_ms": round(statistics.mean(ttft), 1) if ttft else None,
        "errors": len(errors), "error_examples": sorted(set(errors))[:3],
        "requests": len(results), "ok": len(ok), "wall_s": round(wall, 2),
        "generated_tokens": sum(tokens),
        "mean_tokens_per_request": round(statistics.mean(tokens), 2) if tokens else 0,
        "tokens_counted_from": ("usage" if ok and all(r["usage"] for r in ok) else
                                "content chunks" if ok and not any(r["usage"] for r in ok)
                                else "usage where given, else content chunks"),
        "mean_prompt_tokens": round(statistics.mean(prompt_tokens), 2) if prompt_tokens else None,
        "finish_reasons": finish,
        "streams_without_done": faults_done if hf else sum(1 for r in results if not r["done"]),
    }
    out["checks"] = {
        "done_marker": bool(ok) and all(r["done"] for r in ok),
        "include_usage": bool(ok) and all(r["usage_chunk"] for r in ok),
        "model_name_echo": bool(ok) and all(r["models"] == {model} for r in ok),
    }
    echoed = sorted({m for r in ok for m in r["models"]})
    out["model_names_echoed"] = echoed[:3]
    log(f"{name}: {out['tokens_per_s']} tok/s, p50 TTFT {out['p50_ttft_ms']} ms, "
        f"{out['errors']} errors, {out['mean_tokens_per_request']} tokens/request")
    return out


def check_models_endpoint(base: str, model: str, timeout: float) -> tuple[bool, str]:
    import httpx

    try:
        r = httpx.get(base + "/v1/models", timeout=timeout)
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}"
        ids = [m.get("id") for m in r.json().get("data", [])]
        return model in ids, f"ids {ids[:5]}"
    except (httpx.HTTPError, ValueError, AttributeError) as e:
        return False, f"{type(e).__name__}: {e}"


def bench_server(name: str, server: Server, model: str, prompts: list[str], warm: list[str],
                 args) -> dict:
    try:
        ready_s = server.wait_ready(args.timeout)
        log(f"{name} ready in {ready_s:.1f} s; warming up")
        warm_results, _ = asyncio.run(drive(server.base, model, warm, len(warm), args.max_tokens,
                                            args.temperature, args.timeout))
        bad = [r["error"] for r in warm_results if r["error"]]
        if bad:
            log(f"{name}: warm-up errors: {bad}")
        log(f"{name}: {len(prompts)} requests, {args.clients} clients")
        results, wall = asyncio.run(drive(server.base, model, prompts, args.clients,
                                          args.max_tokens, args.temperature, args.timeout))
        out = summarize(name, results, wall, model, hf=name == "hf")
        ok, detail = check_models_endpoint(server.base, model, min(args.timeout, 30))
        out["checks"] = {"models_endpoint": ok, **out["checks"]}
        out["models_endpoint_detail"] = detail
        out["ready_s"] = round(ready_s, 1)
        if server.proc.poll() is not None:
            out["exited_early"] = server.proc.returncode
        return out
    except BaseException:
        log(f"{name} log tail:\n{server.tail()}")
        raise
    finally:
        server.stop()


def combine(rounds: list[dict]) -> dict:
    """One server's rounds as one: the round of median throughput, with the errors of all and
    the per-round throughput and TTFT beside it."""
    ranked = sorted(rounds, key=lambda r: r["tokens_per_s"] or 0)
    out = dict(ranked[(len(ranked) - 1) // 2])
    if len(rounds) > 1:
        out["errors"] = sum(r["errors"] for r in rounds)
        out["error_examples"] = sorted({e for r in rounds for e in r["error_examples"]})[:3]
        out["checks"] = {c: all(r["checks"][c] for r in rounds) for c in rounds[0]["checks"]}
        out["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in rounds]
        out["rounds_p50_ttft_ms"] = [r["p50_ttft_ms"] for r in rounds]
    return out


# ------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16, help="concurrent streaming clients (default: 16)")
    ap.add_argument("--requests", type=int, default=64, help="requests in total (default: 64)")
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request (default: 64)")
    ap.add_argument("--prompt-tokens", type=int, default=32,
                    help="prompt length in tokens, chat template included (default: 32)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="sampling temperature of every request (default: 0, greedy)")
    ap.add_argument("--skip-hf", action="store_true", help="goldmine only (no transformers serve)")
    ap.add_argument("--port-base", type=int, default=18400,
                    help="first port tried; each server gets the next free one (default: 18400)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds a server may take to become ready, and each request (default: 300)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="workload runs per server, alternating goldmine / transformers, each on a "
                         "freshly started server; the run of median tokens/s is reported, errors "
                         "of all runs summed (default: 1)")
    ap.add_argument("--seed", type=int, default=0, help="weights, tokenizer and prompt seed (default: 0)")
    ap.add_argument("--goldmine-args", default="",
                    help="extra options for `goldmine serve`, one string (e.g. "
                         "\"--prefill-chunk 128 --max-batch 16\")")
    ap.add_argument("--dir", help="working directory (default: a temporary one)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    work = Path(args.dir or tempfile.mkdtemp(prefix="goldmine-bench-serve-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOLDMINE_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(work / "hf-home"),
           "PYTHONUNBUFFERED": "1"}
    os.environ["GOLDMINE_HOME"] = env["GOLDMINE_HOME"]

    model_dir, tok = build_model_dir(work / "model", args.seed)
    texts = make_prompts(tok, args.requests + 2, args.prompt_tokens, args.seed)
    warm, prompts = texts[:2], texts[2:]
    log(f"model in {model_dir}; {len(prompts)} prompts of {args.prompt_tokens} tokens")

    runs: dict[str, list[dict]] = {"goldmine": []} if args.skip_hf else {"goldmine": [], "hf": []}
    port = args.port_base - 1
    hf_bin = Path(sys.executable).parent / "transformers"
    hf_cmd = [str(hf_bin)] if hf_bin.exists() else [sys.executable, "-m", "transformers.cli.transformers"]
    for r in range(args.rounds):  # servers one at a time, alternating when rounds > 1
        for name in runs:
            port = free_port(port + 1)
            tag = f"{name}-{r + 1}"
            if name == "goldmine":
                cmd = [sys.executable, "-m", "goldmine", "serve",
                       "--model", f"{SERVED_NAME}={model_dir}", "--no-auth",
                       "--host", "127.0.0.1", "--port", str(port), "--db", str(work / "serve.db"),
                       *shlex.split(args.goldmine_args)]
                model = SERVED_NAME
            else:
                cmd = hf_cmd + ["serve", "--continuous-batching", "--host", "127.0.0.1",
                                "--port", str(port), str(model_dir)]
                model = str(model_dir)
            server = Server(name, cmd, port, work / f"{tag}-serve.log", env)
            runs[name].append(bench_server(name, server, model, prompts, warm, args))
    results = {name: combine(rs) for name, rs in runs.items()}

    g = results["goldmine"]
    out: dict = {
        "goldmine_tokens_per_s": g["tokens_per_s"],
        "goldmine_p50_ttft_ms": g["p50_ttft_ms"], "goldmine_p99_ttft_ms": g["p99_ttft_ms"],
        "errors": g["errors"],
        "goldmine_mean_tokens_per_request": g["mean_tokens_per_request"],
    }
    if "hf" in results:
        h = results["hf"]
        out.update({
            "hf_tokens_per_s": h["tokens_per_s"],
            "ratio": round(g["tokens_per_s"] / h["tokens_per_s"], 3)
            if g["tokens_per_s"] and h["tokens_per_s"] else None,
            "ratio_of_best_rounds": round(max(r["tokens_per_s"] or 0 for r in runs["goldmine"])
                                          / max(r["tokens_per_s"] or 1e-9 for r in runs["hf"]), 3),
            "hf_p50_ttft_ms": h["p50_ttft_ms"], "hf_p99_ttft_ms": h["p99_ttft_ms"],
            "hf_errors": h["errors"],
            "hf_mean_tokens_per_request": h["mean_tokens_per_request"],
            "hf_faults": [c for c in CHECKS if not h["checks"].get(c)],
        })
    out["goldmine_faults"] = [c for c in CHECKS if not g["checks"].get(c)]
    out["goldmine_passes"] = [c for c in CHECKS if g["checks"].get(c)]
    out["goals"] = GOALS
    meets = {"errors": g["errors"] <= GOALS["errors"],
             "goldmine_p50_ttft_ms": g["p50_ttft_ms"] is not None
             and g["p50_ttft_ms"] <= GOALS["goldmine_p50_ttft_ms"]}
    if "ratio" in out:
        meets["ratio"] = out["ratio"] is not None and out["ratio"] >= GOALS["ratio"]
    out["meets_goals"] = all(meets.values())
    out["meets"] = meets
    out["goldmine_args"] = args.goldmine_args
    out["workload"] = {"clients": args.clients, "requests": len(prompts), "rounds": args.rounds,
                       "max_tokens": args.max_tokens, "prompt_tokens": args.prompt_tokens,
                       "temperature": args.temperature, "stream": True}
    out["model"] = {"n_layer": 6, "n_head": 6, "n_embd": 384, "vocab": 8192, "dtype": "fp32",
                    "weights": f"random, seed {args.seed}"}
    out["servers"] = results
    out["cpus"] = os.cpu_count()
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
