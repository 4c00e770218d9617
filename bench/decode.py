"""Batch-1 greedy decoding: goldmine's serving engine against transformers `generate`, same run.

A 6-layer, 384-wide Llama-format GPT (6 heads, SwiGLU 1024, vocab 8192, context 1024, fp32,
random weights from a fixed seed) is built by goldmine and the same weights are loaded into
`transformers.LlamaForCausalLM` through goldmine.export.llama's conversion; the logits of both are
checked to agree before anything is timed. From a 32-token prompt each side generates exactly N
new tokens greedily (no stop token): goldmine with `Engine.generate(prompt, Sampling(
max_tokens=N, temperature=0, stop_ids=()))`, transformers with `generate(do_sample=False,
min_new_tokens=N, max_new_tokens=N, eos_token_id=None)`. Each side runs in a process of its
own (see `worker`). One warm-up each, then R rounds that alternate goldmine / transformers so
machine noise hits both alike; medians are compared.
`ratio` = goldmine tokens/s / transformers tokens/s. The greedy tokens of both are compared too
(`same_tokens`, `common_prefix`: float noise may let them part late). Prints one JSON object.

    python bench/decode.py [--new-tokens 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

GOAL = 1.5
SHAPE = dict(vocab_size=8192, n_layer=6, n_head=6, n_embd=384, block_size=1024)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_models(seed: int = 0, vocab_size: int = SHAPE["vocab_size"], check: bool = True):
    """(goldmine GPT, transformers LlamaForCausalLM) holding the same random weights, both in
    eval mode; with `check`, fails loudly unless their logits agree on a random sequence."""
    from transformers import LlamaForCausalLM

    from goldmine.export.llama import to_hf_config, to_hf_state_dict
    from goldmine.model import GPT, GPTConfig

    cfg = GPTConfig(**{**SHAPE, "vocab_size": vocab_size})
    ours = GPT(cfg, seed=seed).eval()
    hf = LlamaForCausalLM(to_hf_config(cfg, bos_token_id=None, eos_token_id=None,
                                       pad_token_id=None))
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg))
    hf.eval()
    if check:
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.randint(0, cfg.vocab_size, (2, 64), generator=g)
        with torch.no_grad():
            a, b = ours(x), hf(input_ids=x).logits
        diff = float((a - b).abs().max())
        if not diff < 1e-3 * max(1.0, float(a.abs().max())):
            raise SystemExit(f"error: goldmine and transformers logits differ (max |diff| {diff:.3g}); "
                             "the weight conversion is broken, nothing timed")
        log(f"logits agree (max |diff| {diff:.2e})")
    return ours, hf


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def worker(side: str, args, conn) -> None:
    """One side in a process of its own: build the model, then answer "run" with
    (seconds, new token ids) until told to stop. Separate processes because torch ops from two
    threads of one process (the engine's scheduler thread and the caller of `generate`) each
    bring an OpenMP pool, and with more pool threads than cores libgomp stops spinning and puts
    workers to sleep between ops: the small ops of batch-1 decoding then run up to 3x slower,
    whichever side runs second. goldmine's engine runs its scheduler in the calling thread here
    (`Engine.generate` on an engine that is not started), as `goldmine serve` does."""
    from goldmine.runtime import tune_cpu_allocator

    tuned = tune_cpu_allocator()
    torch.manual_seed(args.seed)
    N = args.new_tokens
    g = torch.Generator().manual_seed(args.seed + 2)
    prompt = torch.randint(0, SHAPE["vocab_size"], (args.prompt_tokens,), generator=g).tolist()
    if side == "hf":
        ours, hf = build_models(args.seed, check=True)
        params = ours.num_params()
        del ours
        hf_input = torch.tensor([prompt])
        hf_kw = dict(max_new_tokens=N, min_new_tokens=N, do_sample=False, eos_token_id=None,
                     pad_token_id=0, use_cache=True, temperature=None, top_p=None, top_k=None)

        def run() -> list[int]:
            with torch.inference_mode():
                out = hf.generate(hf_input, attention_mask=torch.ones_like(hf_input), **hf_kw)
            return out[0, len(prompt):].tolist()
        stop = None
    else:
        from goldmine.model import GPT, GPTConfig
        from goldmine.serve.engine import Engine, EngineConfig, Sampling

        ours = GPT(GPTConfig(**SHAPE), seed=args.seed).eval()
        params = ours.num_params()
        # not started: generate() runs the scheduler in this (the main) thread, see Engine.run
        engine = Engine(ours, EngineConfig(compile=side == "goldmine-compiled"))
        if side == "goldmine-compiled":
            engine.warm_up()                    # what `goldmine serve --compile` does at start

        def run() -> list[int]:
            return engine.generate(prompt, Sampling(max_tokens=N, temperature=0.0, stop_ids=()))
        stop = None
    conn.send({"params": params, "threads": torch.get_num_threads(), "allocator_tuned": tuned})
    try:
        while conn.recv():
            t = time.perf_counter()
            ids = run()
            conn.send((time.perf_counter() - t, ids))
    finally:
        if stop:
            stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=128,
                    help="tokens each side generates per run, exactly (default: 128)")
    ap.add_argument("--prompt-tokens", type=int, default=32, help="prompt length (default: 32)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="timed rounds, each one goldmine run then one transformers run (default: 5)")
    ap.add_argument("--seed", type=int, default=0, help="weights and prompt seed (default: 0)")
    ap.add_argument("--skip-hf", action="store_true", help="time goldmine only (no ratio)")
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the torch.compile'd engine (`goldmine serve --compile`)")
    args = ap.parse_args()
    N = args.new_tokens
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    names = ["goldmine"] + ([] if args.no_compile else ["goldmine-compiled"]) \
        + ([] if args.skip_hf else ["hf"])
    procs, conns, info = {}, {}, {}
    tokens: dict[str, list[int]] = {}
    rates: dict[str, list[float]] = {k: [] for k in names}

    def call(name: str) -> tuple[float, list[int]]:
        conns[name].send(True)
        if not conns[name].poll(600):
            raise SystemExit(f"error: {name} did not finish a generation in 600 s")
        dt, ids = conns[name].recv()
        if len(ids) != N:
            raise SystemExit(f"error: {name} generated {len(ids)} tokens, not {N}")
        return dt, ids

    try:
        for name in names:  # one at a time: building a model is not timed but takes the CPU
            parent, child = ctx.Pipe()
            procs[name] = ctx.Process(target=worker, args=(name, args, child), daemon=True)
            procs[name].start()
            conns[name] = parent
            if not parent.poll(300):
                raise SystemExit(f"error: the {name} worker did not start in 300 s")
            try:
                info[name] = parent.recv()
            except EOFError:
                raise SystemExit(f"error: the {name} worker failed (see above)") from None
        for name in names:  # warm-up
            dt, tokens[name] = call(name)
            log(f"warm-up {name}: {N} tokens in {dt:.2f} s")
        for r in range(args.rounds):
            for name in names:
                dt, ids = call(name)
                if ids != tokens[name]:
                    log(f"warning: {name} greedy output changed between runs")
                rates[name].append(N / dt)
            log(f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1]:.1f} tok/s" for k, v in rates.items()))
    finally:
        for c in conns.values():
            try:
                c.send(False)
            except OSError:
                pass
        for p in procs.values():
            p.join(10)
            if p.is_alive():
                p.kill()

    ours_tps = statistics.median(rates["goldmine"])
    result: dict = {"goldmine_tokens_per_s": round(ours_tps, 1)}
    if not args.skip_hf:
        hf_tps = statistics.median(rates["hf"])
        result.update({
            "hf_tokens_per_s": round(hf_tps, 1),
            "ratio": round(ours_tps / hf_tps, 3),
            "goal": GOAL, "meets_goal": ours_tps / hf_tps >= GOAL,
            "same_tokens": tokens["goldmine"] == tokens["hf"],
            "common_prefix": common_prefix(tokens["goldmine"], tokens["hf"]),
            "hf_tokens_per_s_all": [round(x, 1) for x in rates["hf"]],
            "ratio_of_best": round(max(rates["goldmine"]) / max(rates["hf"]), 3),
        })
    if "goldmine-compiled" in rates:
        c_tps = statistics.median(rates["goldmine-compiled"])
        result["goldmine_compiled_tokens_per_s"] = round(c_tps, 1)
        result["goldmine_compiled_tokens_per_s_all"] = [round(x, 1)
                                                        for x in rates["goldmine-compiled"]]
        result["compiled_same_tokens"] = tokens["goldmine-compiled"] == tokens["goldmine"]
        if not args.skip_hf:
            result["ratio_compiled"] = round(c_tps / hf_tps, 3)
            result["meets_goal_compiled"] = c_tps / hf_tps >= GOAL
    import transformers

    result.update({
        "goldmine_tokens_per_s_all": [round(x, 1) for x in rates["goldmine"]],
        "new_tokens": N, "prompt_tokens": args.prompt_tokens, "rounds": args.rounds,
        "batch": 1, "greedy": True, "params": info["goldmine"]["params"],
        "shape": {**SHAPE, "intermediate": 1024, "dtype": "fp32"},
        "threads": info["goldmine"]["threads"],
        "allocator_tuned": info["goldmine"]["allocator_tuned"],
        "process_per_side": True,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "cpu": platform.processor() or platform.machine(),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
