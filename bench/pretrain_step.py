"""Train-step throughput: goldmine's GPT against transformers.LlamaForCausalLM, same process.

Both models have the same dimensions (6 layers, 6 heads, 384 wide, SwiGLU 1024, context 256,
batch 16, vocab 65, fp32, CPU), the same optimizer (AdamW, fused), gradient clipping at 1.0 and
the same allocator settings. Steps alternate between the two in rounds so that machine noise
hits both alike; the medians are compared. A large square matmul measured in the same run gives
the practical peak that MFU is taken against. Prints one JSON object.

    python bench/pretrain_step.py [--rounds 8] [--steps 3]
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

from goldmine import cost  # noqa: E402
from goldmine.config import PretrainConfig  # noqa: E402
from goldmine.export.llama import to_hf_config  # noqa: E402
from goldmine.model import GPT, GPTConfig  # noqa: E402
from goldmine.runtime import tune_cpu_allocator  # noqa: E402
from goldmine.train.pretrain import make_optimizer  # noqa: E402


def train_step_fn(model, loss_fn, optimizer):
    def step():
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8, help="alternating measurement rounds")
    ap.add_argument("--steps", type=int, default=3, help="train steps per model per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=256)
    args = ap.parse_args()

    allocator_tuned = tune_cpu_allocator()  # process-wide: applies to both models alike
    torch.manual_seed(0)
    B, T = args.batch, args.context
    cfg = GPTConfig(vocab_size=65, block_size=T, n_layer=6, n_head=6, n_embd=384)
    ours = GPT(cfg, seed=0)

    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(to_hf_config(cfg))
    hf.train()
    x = torch.randint(0, 65, (B, T))
    y = torch.randint(0, 65, (B, T))
    pcfg = PretrainConfig()
    steps = {
        "goldmine": train_step_fn(ours, lambda: ours(x, targets=y),
                                  make_optimizer(ours, pcfg, torch.device("cpu"))),
        "hf": train_step_fn(hf, lambda: hf(input_ids=x, labels=y).loss,
                            make_optimizer(hf, pcfg, torch.device("cpu"))),
    }
    for step in steps.values():  # warm up allocator, kernels, optimizer state
        step()
        step()
    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[name].append(args.steps * B * T / (time.perf_counter() - t))

    peak = cost.measure_matmul_flops(n=2048, seconds=1.0)
    ours_tps = statistics.median(rates["goldmine"])
    hf_tps = statistics.median(rates["hf"])
    flops_tok = cost.flops_per_token(cfg, T)
    result = {
        "goldmine_tokens_per_s": round(ours_tps, 1),
        "hf_tokens_per_s": round(hf_tps, 1),
        "ratio": round(ours_tps / hf_tps, 3),
        "goldmine_gflops": round(ours_tps * flops_tok / 1e9, 1),
        "hf_gflops": round(hf_tps * flops_tok / 1e9, 1),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "mfu_vs_matmul_peak": round(ours_tps * flops_tok / peak, 3),
        "flops_per_token": flops_tok,
        "params": ours.num_params(),
        "shape": {"n_layer": 6, "n_head": 6, "n_embd": 384, "intermediate": cfg.intermediate_size,
                  "context": T, "batch": B, "vocab": 65, "dtype": "fp32"},
        "rounds": args.rounds, "steps_per_round": args.steps,
        "goldmine_tokens_per_s_all": [round(r) for r in rates["goldmine"]],
        "hf_tokens_per_s_all": [round(r) for r in rates["hf"]],
        "allocator_tuned": allocator_tuned, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
