"""CUDA paths: bf16 autocast, fused AdamW, generation on the GPU, NCCL. Skipped without CUDA."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_pretrain_bf16_on_cuda_learns(workspace):
    from goldmine.train.pretrain import pretrain

    res = pretrain(data=workspace["shards"], model="test", batch_size=8, block_size=32,
                   max_steps=40, warmup_steps=4, eval_every=20, eval_batches=2, log_every=1,
                   learning_rate=3e-3, device="cuda")
    assert res["stop_reason"] == "max_steps" and res["val_loss"] < 6.0
    from goldmine.registry import Registry

    m = Registry().get(res["run_id"])["metrics"]
    assert m["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert m["device"].startswith("cuda") and res["mfu"] is not None


def test_sft_bf16_on_cuda_with_packing_and_lora(gpt_run):
    from goldmine.train.finetune_sft import finetune_sft

    for lora in (False, True):
        res = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=6,
                           eval_every=3, batch_size=4, learning_rate=3e-3, packing=True,
                           lora=lora, device="cuda")
        assert res["stop_reason"] == "max_steps" and res["val"]["loss"] < 8.0
        assert res["device"].startswith("cuda")
        assert res["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_fused_adamw_on_cuda():
    from goldmine.config import PretrainConfig
    from goldmine.model import GPT, GPTConfig
    from goldmine.train.pretrain import make_optimizer

    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16)).cuda()
    opt = make_optimizer(model, PretrainConfig(), torch.device("cuda"))
    assert opt.defaults.get("fused") is True


def test_generate_on_cuda_matches_cpu_greedy():
    from goldmine.generate import SamplingParams, sample_tokens
    from goldmine.model import GPT, GPTConfig

    torch.manual_seed(0)
    cpu = GPT(GPTConfig(vocab_size=64, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()
    gpu = GPT(cpu.config).cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    p = SamplingParams(max_new_tokens=20, temperature=0.0)
    a = torch.stack(list(sample_tokens(cpu, [1, 2, 3], p)), 1)
    b = torch.stack(list(sample_tokens(gpu, [1, 2, 3], p)), 1).cpu()
    assert torch.equal(a, b)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs for NCCL")
def test_torchrun_nccl_two_gpus(workspace, home, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "goldmine", "pretrain", "--data", workspace["shards"], "--preset", "test",
         "--block-size", "32", "--max-steps", "10", "--out", str(tmp_path / "nccl"), "--json"],
        env={**os.environ, "GOLDMINE_HOME": str(home)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["world_size"] == 2 and res["ranks_in_sync"]


def test_serving_engine_on_cuda():
    """fp32: batched requests give exactly each one's tokens alone; bf16 (what `goldmine serve`
    uses on CUDA): every request completes with its tokens from the bf16 weights."""
    from goldmine.generate import SamplingParams, sample_tokens
    from goldmine.model import GPT, GPTConfig
    from goldmine.serve.engine import Engine, EngineConfig, Sampling

    cfg = GPTConfig(vocab_size=300, block_size=128, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
    model = GPT(cfg, seed=1).cuda().eval()
    prompts = [[3 + i + j for j in range(4 + 5 * i)] for i in range(10)]
    greedy = SamplingParams(max_new_tokens=12, temperature=0, top_k=None, top_p=None)
    alone = [[int(t[0]) for t in sample_tokens(model, p, greedy)] for p in prompts]
    with Engine(model, EngineConfig(max_batch=4, prefill_chunk=16)) as e:
        reqs = [e.submit(p, Sampling(max_tokens=12, temperature=0.0)) for p in prompts]
        assert [list(r) for r in reqs] == alone
    with Engine(model.to(torch.bfloat16), EngineConfig(max_batch=4)) as e:
        assert e.cache.k[0].dtype == torch.bfloat16 and e.cache.k[0].is_cuda
        reqs = [e.submit(p, Sampling(max_tokens=12, temperature=0.8, seed=i))
                for i, p in enumerate(prompts)]
        assert all(len(list(r)) == 12 for r in reqs)
