"""The LSTM baseline (`goldmine pretrain --arch lstm`): the model, its size and FLOPs, training,
resuming, checkpoints, generation, and the commands that refuse it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from goldmine import cost
from goldmine.checkpoint import list_steps, load_model, save_checkpoint
from goldmine.cli import main
from goldmine.config import PretrainConfig
from goldmine.errors import GoldmineError
from goldmine.generate import SamplingParams, generate, sample_tokens
from goldmine.lstm import LSTM, LSTMConfig, lstm_for_params
from goldmine.model import GPTConfig
from goldmine.train import pretrain as pretrain_module
from goldmine.train.pretrain import pretrain

TINY = dict(arch="lstm", model="test", batch_size=4, block_size=32, warmup_steps=2,
            eval_batches=2, log_every=1)


def tiny(**kw) -> LSTMConfig:
    return LSTMConfig(**{"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_embd": 16,
                         "hidden": 24, **kw})


@pytest.fixture(scope="module")
def lstm_run(workspace, tmp_path_factory):
    """A tiny LSTM pretrained a few steps on the sample shards (in a registry of its own)."""
    root = tmp_path_factory.mktemp("lstm-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        res = pretrain(data=workspace["shards"], max_steps=4, eval_every=0, ckpt_every=4,
                       out=str(root / "run"), **TINY)
    return res


# ---------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("kw", [{}, {"hidden": 16}, {"tie_embeddings": True, "dropout": 0.1}])
def test_shapes_loss_and_parameter_count(kw):
    cfg = tiny(**kw)
    model = LSTM(cfg, seed=0)
    x = torch.randint(0, 50, (3, 7))
    y = torch.randint(0, 50, (3, 7))
    y[0, :2] = -100                                               # ignored positions
    model.eval()
    logits = model(x)
    assert logits.shape == (3, 7, 50)
    assert torch.allclose(model(x, targets=y), F.cross_entropy(logits.view(-1, 50), y.view(-1),
                                                               ignore_index=-100))
    assert (model.proj is None) == (cfg.hidden == cfg.n_embd)
    assert model.num_params() == cost.lstm_param_count(cfg)
    if cfg.tie_embeddings:
        assert model.head.weight is model.embed.weight
    # the same seed gives the same weights whatever the global RNG holds
    torch.manual_seed(123)
    other = LSTM(cfg, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 other.state_dict().values(), strict=True))


def textbook_forward(model: LSTM, idx):
    """The LSTM equations step by step, with nn.LSTM's weights: (B, T) -> logits (B, T, V)."""
    lstm, H = model.lstm, model.config.hidden
    x = model.embed(idx)                                          # (B, T, E)
    for layer in range(model.config.n_layer):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        h = c = torch.zeros(idx.size(0), H)
        out = []
        for t in range(idx.size(1)):
            gates = x[:, t] @ w_ih.T + h @ w_hh.T + b             # (B, 4H): i, f, g, o
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        x = torch.stack(out, dim=1)                               # (B, T, H)
    if model.proj is not None:
        x = model.proj(x)
    return model.head(x)


def test_flops_per_token_count_every_matmul_the_recurrent_ones_included():
    cfg = tiny()
    model = LSTM(cfg, seed=0).eval()
    B, T = 2, 8
    idx = torch.randint(0, 50, (B, T))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits = textbook_forward(model, idx)
    with torch.no_grad():
        assert torch.allclose(logits, model(idx), atol=1e-5)     # the equations nn.LSTM runs
    assert counter.get_total_flops() == B * T * cost.flops_per_token(cfg, training=False)
    assert cost.flops_per_token(cfg) == 3 * 2 * cost.lstm_matmul_weights(cfg)
    assert cost.flops_per_token(cfg, seq_len=1000) == cost.flops_per_token(cfg, seq_len=10)
    # the forget gates start open: bias 1 in total, so the cell state is kept early on
    b = model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0
    assert torch.equal(b[cfg.hidden:2 * cfg.hidden], torch.ones(cfg.hidden))


@pytest.mark.parametrize("preset,vocab", [("test", 512), ("tiny", 65), ("small", 8192)])
def test_sized_to_a_gpts_parameter_count(preset, vocab):
    gpt = GPTConfig.from_preset(preset, vocab_size=vocab)
    target = cost.param_count(gpt)
    for layers in (1, 2, 3):
        cfg = lstm_for_params(target, vocab_size=vocab, n_layer=layers, n_embd=gpt.n_embd)
        assert abs(LSTM(cfg).num_params() - target) / target < 0.02, (layers, cfg)


def test_shakespeare_char_lstm_preset_matches_its_gpt():
    cfg = PretrainConfig.from_preset("shakespeare-char-lstm")
    assert cfg.arch == "lstm" and cfg.block_size == 64 and cfg.max_steps == 2000
    gpt = GPTConfig.from_preset(cfg.model, vocab_size=65, n_layer=cfg.n_layer,
                                n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size)
    lstm = pretrain_module.lstm_config(cfg, gpt)
    assert (lstm.n_layer, lstm.hidden, lstm.n_embd) == (2, 241, 128)   # as the preset says
    assert abs(cost.lstm_param_count(lstm) / cost.param_count(gpt) - 1) < 0.01


def test_generation_with_the_state_equals_rerunning_the_prefix():
    model = LSTM(tiny(), seed=0).eval()
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0, top_k=None, top_p=None)
    prompt = [1, 5, 7, 9]
    fast = [int(t) for t in sample_tokens(model, prompt, greedy, use_cache=True)]
    slow = [int(t) for t in sample_tokens(model, prompt, greedy, use_cache=False)]
    assert fast == slow and len(fast) == 12
    # step by step through the state, the logits are those of the whole sequence
    x = torch.randint(0, 50, (2, 10))
    state = model.new_cache(2)
    steps = torch.cat([model(x[:, :4], cache=state), model(x[:, 4:7], cache=state),
                       model(x[:, 7:], cache=state)], dim=1)
    assert state.pos == 10 and state.h.shape == (2, 2, 24)
    assert torch.allclose(steps, model(x), atol=1e-5)
    # sampled with a seed: reproducible
    p = SamplingParams(max_new_tokens=8, temperature=1.0, top_k=10, top_p=0.9, seed=3)
    first, again = (torch.stack(list(sample_tokens(model, prompt, p, 2))) for _ in range(2))
    assert first.shape == (8, 2) and torch.equal(first, again)


def test_checkpoint_round_trip_gives_the_same_logits(workspace, tmp_path):
    from goldmine.tokenizer import Tokenizer

    tok_path = Path(workspace["tokenizer"])                      # .../tokenizer.json
    vocab = Tokenizer.load(tok_path).vocab_size
    for tied in (False, True):
        model = LSTM(LSTMConfig(vocab_size=vocab, block_size=32, n_layer=2, n_embd=16, hidden=20,
                                tie_embeddings=tied), seed=1).eval()
        ck = save_checkpoint(tmp_path / f"ck-{tied}", model, tok_path, {"step": 0})
        meta = json.loads((ck / "config.json").read_text())
        assert meta["arch"] == "lstm" and meta["model"]["hidden"] == 20
        loaded, tok, _ = load_model(ck)
        assert isinstance(loaded, LSTM) and not loaded.training
        x = torch.randint(0, vocab, (2, 9))
        assert torch.equal(loaded(x), model(x))
        assert "model.safetensors" in {p.name for p in ck.iterdir()}
        text = generate(loaded, tok, "The", max_new_tokens=5, temperature=0.0, top_k=None,
                        top_p=None, stop=("zzz",))
        assert isinstance(text, str)


# ------------------------------------------------------------------------------- training
def test_pretrain_lstm_learns_and_records_its_flops(workspace):
    res = pretrain(data=workspace["shards"], max_steps=40, eval_every=20, ckpt_every=20,
                   learning_rate=1e-2, **TINY)
    run_dir = Path(res["run_dir"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:3]) / 3 - 0.5         # it learned something
    assert res["tokens"] == 40 * 4 * 32 and res["tokens_per_s"] > 0 and 0 < res["mfu"] < 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["pretrain"]["arch"] == "lstm" and config["model"]["arch"] == "lstm"
    lstm = LSTMConfig.from_dict(config["model"])
    from goldmine.registry import Registry

    metrics = Registry().get(res["run_id"])["metrics"]
    assert metrics["flops_per_token"] == cost.lstm_flops_per_token(lstm)
    gpt = GPTConfig.from_preset("test", vocab_size=512, block_size=32)
    assert abs(res["params"] / cost.param_count(gpt) - 1) < 0.02  # equal parameters by default
    model, tok, path = load_model(res["run_id"])
    assert isinstance(model, LSTM) and path.name == "best" and tok.add_bos is True


def test_resume_after_a_crash_gives_bitwise_identical_weights(workspace, tmp_path, monkeypatch):
    args = dict(data=workspace["shards"], max_steps=12, ckpt_every=4, eval_every=6, dropout=0.1,
                seed=3, **TINY)
    full = pretrain(out=str(tmp_path / "full"), **args)

    class Crash(Exception):
        pass

    real_save = pretrain_module.save_checkpoint

    def save_then_crash(path, *a, **kw):  # dies right after writing step 8, like a SIGKILL
        out = real_save(path, *a, **kw)
        if Path(path).name == "step-000008":
            raise Crash
        return out

    monkeypatch.setattr(pretrain_module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        pretrain(out=str(tmp_path / "crashed"), **args)
    monkeypatch.setattr(pretrain_module, "save_checkpoint", real_save)
    torch.manual_seed(999)                   # whatever the RNG holds now, the checkpoint's wins
    res = pretrain(resume=str(tmp_path / "crashed"))
    assert res["step"] == 12
    from safetensors.torch import load_file

    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(Path(full["run_dir"]) / "checkpoints" / "step-000012" / name)
        b = load_file(tmp_path / "crashed" / "checkpoints" / "step-000012" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_torchrun_two_cpu_processes_stay_in_sync(workspace, home, tmp_path):
    env = {**os.environ, "GOLDMINE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "goldmine", "pretrain", "--data", workspace["shards"], "--preset", "test",
         "--arch", "lstm", "--max-steps", "6", "--grad-accum", "2", "--dropout", "0.1",
         "--eval-every", "3", "--ckpt-every", "3", "--out", str(tmp_path / "ddp"), "--json"],
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["world_size"] == 2 and res["ranks_in_sync"] is True and res["step"] == 6


def test_options_that_do_not_apply_are_refused(workspace):
    with pytest.raises(GoldmineError, match="lstm_hidden: only with --arch lstm"):
        PretrainConfig(lstm_hidden=64).validate()
    with pytest.raises(GoldmineError, match="rope_theta: an LSTM has no rotary"):
        PretrainConfig(arch="lstm", rope_theta=5e5).validate()
    with pytest.raises(GoldmineError, match="arch"):
        PretrainConfig(arch="rnn").validate()
    res = pretrain(data=workspace["shards"], max_steps=1, eval_every=0, ckpt_every=1,
                   lstm_layers=3, lstm_hidden=40, **TINY)
    model, _, _ = load_model(res["run_id"])
    assert (model.config.n_layer, model.config.hidden) == (3, 40)
    with pytest.raises(GoldmineError, match="cannot change: arch"):
        pretrain(resume=res["run_dir"], arch="gpt")


# ------------------------------------------------------------- the commands around a run
def test_cli_pretrain_generate_and_evaluate(capsys, workspace, tmp_path):
    out = str(tmp_path / "cli-lstm")
    code = main(["pretrain", "--data", workspace["shards"], "--preset", "test", "--arch", "lstm",
                 "--max-steps", "4", "--out", out, "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["step"] == 4
    code = main(["generate", "--model", out, "--prompt", "The", "--max-new-tokens", "6",
                 "--preset", "greedy", "--json"])
    gen = json.loads(capsys.readouterr().out)
    assert code == 0 and len(gen["samples"]) == 1 and gen["new_tokens"] <= 6
    code = main(["evaluate", "--model", out, "--data", workspace["corpus"], "--json"])
    ev = json.loads(capsys.readouterr().out)
    assert code == 0, ev
    assert ev["metrics"]["ppl"] > 1 and ev["metrics"]["loss"] == pytest.approx(
        res["val_loss"], rel=0.1)
    code = main(["pretrain", "--data", workspace["shards"], "--preset", "test",
                 "--lstm-layers", "2"])
    assert code != 0 and "lstm_layers: only with --arch lstm" in capsys.readouterr().err


def test_export_quantize_serve_and_sft_refuse_an_lstm(lstm_run, tmp_path):
    from goldmine.export.command import export
    from goldmine.quantize import quantize
    from goldmine.serve.engine import EngineConfig
    from goldmine.serve.models import load_served
    from goldmine.train.finetune_sft import finetune_sft

    run = lstm_run["run_dir"]
    for fmt in ("hf", "onnx", "gguf"):
        with pytest.raises(GoldmineError, match=r"LSTM .* cannot be exported"):
            export(run=run, format=fmt, out=str(tmp_path / fmt))
        assert not (tmp_path / fmt).exists()
    with pytest.raises(GoldmineError, match=r"LSTM .* cannot be quantized"):
        quantize(run=run, out=str(tmp_path / "int8"))
    with pytest.raises(GoldmineError, match="served by `goldmine generate` only"):
        load_served("lstm", run, torch.device("cpu"), EngineConfig())
    with pytest.raises(GoldmineError, match=r"LSTM .* cannot be chat-tuned"):
        finetune_sft(model=run, data=str(tmp_path / "chats.jsonl"))


def test_cost_prices_an_lstm_run_without_an_attention_term(workspace):
    from goldmine.cost.command import cost_train
    from goldmine.cost.training import resolve_model

    res = pretrain(data=workspace["shards"], max_steps=2, eval_every=0, ckpt_every=2, **TINY)
    lstm = LSTMConfig.from_dict(json.loads((Path(res["run_dir"]) / "config.json").read_text())
                                ["model"])
    priced = cost_train(from_run=res["run_id"])
    assert priced["flops"] == pytest.approx(6 * cost.lstm_matmul_weights(lstm) * res["tokens"])
    with pytest.raises(GoldmineError, match="is an LSTM"):
        resolve_model(res["run_dir"])
    assert list_steps(Path(res["run_dir"]) / "checkpoints")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pretrain_bf16_and_generate_on_cuda(workspace):
    res = pretrain(data=workspace["shards"], max_steps=40, eval_every=20, learning_rate=1e-2,
                   device="cuda", **TINY)
    assert res["stop_reason"] == "max_steps" and res["val_loss"] < 6.0 and res["mfu"] is not None
    model, _, _ = load_model(res["run_id"], device="cuda")
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0, top_k=None, top_p=None)
    fast = [int(t) for t in sample_tokens(model, [1, 5, 7], greedy, use_cache=True)]
    assert fast == [int(t) for t in sample_tokens(model, [1, 5, 7], greedy, use_cache=False)]
