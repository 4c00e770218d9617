import json
import os
import subprocess
import sys

import pytest

from goldmine.errors import GoldmineError
from goldmine.registry import Registry, run_id_for_path, start_run


def test_completed_run_records_config_metrics_artifacts_and_git(home):
    with start_run("tokenizer train", {"vocab_size": 512}) as run:
        (run.dir / "tokenizer.json").write_text("{}")
        run.log_metrics({"vocab_size": 512})
        run.add_artifact("tokenizer", run.dir / "tokenizer.json")
    r = Registry().get(run.id)
    assert r["status"] == "completed" and r["command"] == "tokenizer train"
    assert r["config"] == {"vocab_size": 512} and r["metrics"] == {"vocab_size": 512}
    assert r["artifacts"]["tokenizer"].endswith("tokenizer.json")
    assert r["ended"] >= r["started"]
    assert run.dir.parent == home.resolve()
    assert run_id_for_path(run.dir / "tokenizer.json") == run.id


def test_failed_run_keeps_the_error():
    with pytest.raises(ValueError), start_run("pretrain", {}) as run:
        raise ValueError("boom")
    r = Registry().get(run.id)
    assert r["status"] == "failed" and "boom" in r["error"]


def test_lineage_from_paths_inside_other_runs(tmp_path):
    with start_run("tokenizer train", {}) as tok:
        (tok.dir / "tokenizer.json").write_text("{}")
    with start_run("data tokenize", {}) as shards:
        shards.add_parent_from_path(tok.dir / "tokenizer.json")
        shards.add_parent_from_path(tmp_path / "not-a-run.txt")
    assert Registry().get(shards.id)["parents"] == [tok.id]


def test_get_by_prefix_and_by_directory_and_errors():
    with start_run("pretrain", {}) as a:
        pass
    reg = Registry()
    assert reg.get(a.id[:-2])["id"] == a.id
    assert reg.get(str(a.dir))["id"] == a.id
    with pytest.raises(GoldmineError, match="no run"):
        reg.get("nope")
    with start_run("pretrain", {}):
        pass
    with pytest.raises(GoldmineError, match="matches 2 runs"):
        reg.get("pretrain-")


def test_a_killed_process_shows_as_killed(home):
    code = ("from goldmine.registry import start_run\n"
            "import os, signal\n"
            "with start_run('pretrain', {}) as run:\n"
            "    print(run.id, flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "GOLDMINE_HOME": str(home)})
    assert p.returncode == -9
    assert Registry().get(p.stdout.strip())["status"] == "killed"


def test_list_filters_and_orders_newest_first():
    ids = []
    for cmd in ("pretrain", "tokenizer train", "pretrain"):
        with start_run(cmd, {}) as r:
            ids.append(r.id)
    runs = Registry().list(command="pretrain")
    assert [r["id"] for r in runs] == [ids[2], ids[0]]
    assert [r["id"] for r in Registry().list(command="tokenizer")] == [ids[1]]


def test_runs_cli_list_show_compare_json(capsys):
    from goldmine.cli import main

    with start_run("pretrain", {"lr": 1, "seed": 0}) as a:
        a.log_metrics({"val_loss": 2.0})
    with start_run("pretrain", {"lr": 2, "seed": 0}) as b:
        b.log_metrics({"val_loss": 1.5})
    assert main(["runs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed["runs"]] == [b.id, a.id]
    assert main(["runs", "show", a.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {"val_loss": 2.0}
    assert main(["runs", "compare", a.id, b.id, "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["config_differences"] == {"lr": [1, 2]}
    assert cmp["metrics"]["val_loss"] == [2.0, 1.5]
    assert main(["runs", "list"]) == 0  # the table renders
    assert a.id in capsys.readouterr().out
    assert main(["runs", "show", "missing-run"]) == 2
    assert "no run 'missing-run'" in capsys.readouterr().err


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "registry.db"
    bad.write_text("this is not sqlite" * 100)
    with pytest.raises(GoldmineError, match="not a goldmine registry"):
        Registry(bad)
