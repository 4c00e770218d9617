import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from goldmine.checkpoint import list_steps, load_model
from goldmine.config import PretrainConfig
from goldmine.errors import GoldmineError
from goldmine.registry import Registry, run_id_for_path
from goldmine.train.pretrain import learning_rate, pretrain

TINY = dict(model="test", batch_size=4, block_size=32, warmup_steps=2, eval_batches=2,
            log_every=1)


def test_pretrain_learns_records_the_run_and_writes_artefacts(workspace):
    res = pretrain(PretrainConfig(data=workspace["shards"], max_steps=60, eval_every=30,
                                  ckpt_every=30, learning_rate=3e-3, **TINY))
    run_dir = Path(res["run_dir"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(losses) == 60 and len(vals) == 2
    assert sum(losses[-10:]) / 10 < sum(losses[:3]) / 3 - 0.5      # it learned something
    assert res["val_loss"] == vals[-1] and res["val_ppl"] == pytest.approx(2.718281828 ** vals[-1])
    assert res["tokens"] == 60 * 4 * 32 and res["stop_reason"] == "max_steps"
    assert res["tokens_per_s"] > 0 and 0 < res["mfu"] < 1
    assert (run_dir / "loss.png").stat().st_size > 10_000
    assert [p.name for p in list_steps(run_dir / "checkpoints")] == ["step-000030", "step-000060"]
    assert (run_dir / "checkpoints" / "best" / "model.safetensors").is_file()
    run = Registry().get(res["run_id"])
    assert run["status"] == "completed" and run["metrics"]["val_loss"] == res["val_loss"]
    assert run["config"]["max_steps"] == 60
    assert run_id_for_path(workspace["shards"]) in run["parents"]  # lineage: model <- shards
    model, tok, path = load_model(res["run_id"])                  # loads for generation
    assert path.name == "best" and tok.vocab_size == model.config.vocab_size == 512
    assert tok.add_bos is True                                     # prompts framed like the shards


def test_prompts_are_framed_like_the_training_documents(workspace, tmp_path):
    from goldmine.data.shards import write_shards

    write_shards([workspace["corpus"]], workspace["tokenizer"], tmp_path / "nobos", bos=False,
                 progress=False)
    res = pretrain(data=str(tmp_path / "nobos"), max_steps=2, eval_every=0, ckpt_every=2, **TINY)
    _, tok, _ = load_model(res["run_id"])
    assert tok.add_bos is False


def test_pretrain_on_raw_text_tokenizes_first(workspace):
    res = pretrain(data=workspace["corpus"], tokenizer=workspace["tokenizer"], max_steps=3,
                   eval_every=0, ckpt_every=3, **TINY)
    assert (Path(res["run_dir"]) / "data" / "meta.json").is_file()
    assert res["step"] == 3


def test_keep_last_and_max_tokens(workspace):
    res = pretrain(data=workspace["shards"], max_tokens=4 * 32 * 7, ckpt_every=2, keep_last=2,
                   eval_every=0, **TINY)
    assert res["step"] == 7                                       # ceil(max_tokens / per step)
    assert [p.name for p in list_steps(Path(res["run_dir"]) / "checkpoints")] == \
        ["step-000006", "step-000007"]


def test_max_time_stops_early_with_a_checkpoint(workspace):
    res = pretrain(data=workspace["shards"], max_steps=100_000, max_time="1s", eval_every=0,
                   ckpt_every=100_000, **TINY)
    assert res["stop_reason"] == "max_time" and 0 < res["step"] < 100_000
    assert list_steps(Path(res["run_dir"]) / "checkpoints")[-1].name == f"step-{res['step']:06d}"


def test_learning_rate_schedule_warmup_then_cosine():
    cfg = PretrainConfig(learning_rate=1.0, min_lr=0.1, warmup_steps=10)
    assert learning_rate(0, cfg, 110) == pytest.approx(0.1)
    assert learning_rate(9, cfg, 110) == pytest.approx(1.0)
    assert learning_rate(60, cfg, 110) == pytest.approx(0.55)
    assert learning_rate(110, cfg, 110) == pytest.approx(0.1)


def _cli(*args, env=None):
    return [sys.executable, "-m", "goldmine", *args]


def test_sigkill_then_resume_gives_bitwise_identical_weights(workspace, home, tmp_path):
    args = ["pretrain", "--data", workspace["shards"], "--model", "test", "--batch-size", "4",
            "--block-size", "32", "--max-steps", "400", "--ckpt-every", "20", "--eval-every", "100",
            "--eval-batches", "2", "--warmup-steps", "10", "--dropout", "0.1", "--seed", "3"]
    env = {**os.environ, "GOLDMINE_HOME": str(home)}
    full = tmp_path / "full"
    subprocess.run(_cli(*args, "--out", str(full)), env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(killed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step-000060").is_dir():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [p.name for p in list_steps(killed / "checkpoints")]
    assert "step-000400" not in steps                             # killed mid-run
    run_id = json.loads((killed / "run.json").read_text())["id"]
    assert Registry().get(run_id)["status"] == "killed"

    out = subprocess.run(_cli("pretrain", "--resume", str(killed), "--json"), env=env,
                         check=True, capture_output=True, text=True)
    res = json.loads(out.stdout)
    assert res["run_id"] == run_id and res["step"] == 400
    a = load_file(full / "checkpoints" / "step-000400" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step-000400" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = load_file(full / "checkpoints" / "step-000400" / "optimizer.safetensors")
    ob = load_file(killed / "checkpoints" / "step-000400" / "optimizer.safetensors")
    assert all(torch.equal(oa[k], ob[k]) for k in oa)
    assert Registry().get(run_id)["status"] == "completed"


@pytest.mark.slow
def test_torchrun_two_cpu_processes_stay_in_sync(workspace, home, tmp_path):
    env = {**os.environ, "GOLDMINE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "goldmine", "pretrain", "--data", workspace["shards"], "--model", "test",
         "--batch-size", "4", "--block-size", "32", "--max-steps", "12", "--grad-accum", "2",
         "--eval-every", "6", "--eval-batches", "2", "--ckpt-every", "6", "--warmup-steps", "2",
         "--out", str(tmp_path / "ddp"), "--json"],
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["world_size"] == 2 and res["ranks_in_sync"] is True
    assert res["tokens"] == 12 * 4 * 32 * 2 * 2
    assert list_steps(tmp_path / "ddp" / "checkpoints")[-1].name == "step-000012"
    assert len(Registry().list(command="pretrain")) == 1          # rank 0 records the run


def test_resume_errors(workspace, tmp_path):
    with pytest.raises(GoldmineError, match="nothing to resume"):
        pretrain(resume=str(tmp_path))
    with pytest.raises(GoldmineError, match="no unfinished pretrain run"):
        pretrain(resume="latest")
    res = pretrain(data=workspace["shards"], max_steps=2, eval_every=0, ckpt_every=2, **TINY)
    with pytest.raises(GoldmineError, match="cannot change: learning_rate"):
        pretrain(resume=res["run_dir"], learning_rate=0.5)


def test_block_size_longer_than_the_data_is_a_clear_error(workspace):
    with pytest.raises(GoldmineError, match="block"):
        pretrain(data=workspace["shards"], model="test", block_size=10**6, max_steps=1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_then_stops(workspace, home, tmp_path, sig):
    out = tmp_path / "stopped"
    env = {**os.environ, "GOLDMINE_HOME": str(home)}
    proc = subprocess.Popen(_cli("pretrain", "--data", workspace["shards"], "--model", "test",
                                 "--batch-size", "4", "--block-size", "32", "--max-steps", "100000",
                                 "--ckpt-every", "50", "--eval-every", "0", "--out", str(out)),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "step-000050").is_dir():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    last = list_steps(out / "checkpoints")[-1]
    assert int(last.name.split("-")[1]) > 50                     # saved where it stopped
    assert "--resume" in err
    run_id = json.loads((out / "run.json").read_text())["id"]
    assert Registry().get(run_id)["status"] == "interrupted"
    res = pretrain(resume="latest", max_steps=int(last.name.split("-")[1]) + 2)
    assert res["run_id"] == run_id and res["stop_reason"] == "max_steps"
