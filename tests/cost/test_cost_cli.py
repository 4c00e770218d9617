"""`goldmine cost ...` as a user runs it: tables, --json as one object, --explain, one-line
errors naming the option, and the Python twins."""

import json

import pytest

import goldmine
from goldmine.cli import build_parser, main

COMMANDS = {
    "train": ["--params", "7e9", "--tokens", "2e12", "--hardware", "h100-sxm", "--gpus", "8",
              "--mfu", "0.4", "--price-per-gpu-hour", "2.5"],
    "optimal": ["--flops", "5.76e23", "--hardware", "h100-sxm", "--gpus", "256"],
    "memory": ["--preset", "llama-7b", "--hardware", "a100-80gb", "--gpus", "8", "--sharded"],
    "serve": ["--tokens-per-s", "2500", "--hardware", "l40s", "--utilization", "0.3"],
}


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", COMMANDS)
def test_json_is_one_object_with_the_same_numbers_as_the_table(capsys, name):
    code, out, _ = run_cli(capsys, "cost", name, *COMMANDS[name], "--json")
    assert code == 0
    result = json.loads(out)
    assert isinstance(result, dict)
    code, table, _ = run_cli(capsys, "cost", name, *COMMANDS[name])
    assert code == 0
    if name == "train":
        assert result["cost_usd"] == pytest.approx(2.5 * result["gpu_hours"])
        assert f"${result['cost_usd']:,.0f}" in table and "GPU-hours" in table
    elif name == "optimal":
        assert result["points"]["rule"]["params"] == pytest.approx(70e9, rel=0.1)
        assert "69.3B" in table and "Hoffmann" in table
    elif name == "memory":
        assert result["fits"] and f"{result['total_gb']:,.2f} GB" in table and "yes" in table
    else:
        assert f"${result['usd_per_1m_output_tokens']:,.4g}" in table


def test_train_explain_prints_the_formulas_with_numbers(capsys):
    code, out, _ = run_cli(capsys, "cost", "train", "--preset", "llmc-gpt2-124m", "--explain")
    assert code == 0
    assert "C = 6·N·D + 12·L·T·C·D" in out and "12 × 12 × 1024 × 768" in out
    assert "time = D / tokens/s" in out and "cost = GPU-hours × price" in out
    code, out, _ = run_cli(capsys, "cost", "train", "--preset", "llmc-gpt2-124m")
    assert "C = 6·N·D" not in out and "95.4 min" in out


def test_train_from_a_yaml_config(capsys, tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("preset: llama2-7b\n")
    code, out, _ = run_cli(capsys, "cost", "train", "--config", str(f), "--json")
    assert code == 0 and json.loads(out)["mfu"] == pytest.approx(0.39, abs=0.01)


@pytest.mark.parametrize("args,message", [
    (["train", "--params", "7e9", "--tokens", "2e12", "--mfu", "0"], "mfu: must be in (0, 1], got 0.0"),
    (["train", "--params", "7e9", "--tokens", "2e12", "--mfu", "1.5"], "mfu: must be in (0, 1]"),
    (["train", "--params=-7e9", "--tokens", "2e12"], "params: must be > 0"),
    (["train", "--params", "7e9", "--tokens", "0"], "tokens: must be > 0, got 0"),
    (["train", "--params", "7e9", "--tokens", "1e9", "--hardware", "h900"],
     "hardware: unknown 'h900'; known: h100-sxm, h100-pcie, h200, a100-80gb"),
    (["train", "--params", "lots", "--tokens", "1e9"], "params: expected int, got 'lots'"),
    (["optimal"], "flops: give a budget"),
    (["optimal", "--budget", "-3", "--hardware", "l4"], "budget: must be > 0"),
    (["memory", "--model", "tiny"], "hardware: name the device"),
    (["memory", "--model", "tiny", "--hardware", "l4", "--gpus", "0"], "gpus: must be > 0"),
    (["serve", "--tokens-per-s", "-1", "--hardware", "l4"], "tokens_per_s: must be > 0"),
    (["serve", "--tokens-per-s", "10", "--hardware", "l4", "--utilization", "2"],
     "utilization: must be in (0, 1]"),
])
def test_bad_input_gives_one_line_error_naming_the_option(capsys, args, message):
    code, _, err = run_cli(capsys, "cost", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and err.count("error:") == 1


def _cost_parsers():
    parser = build_parser()
    cost = parser._subparsers._group_actions[0].choices["cost"]
    return cost._subparsers._group_actions[0].choices


def test_every_cost_command_documents_its_options(capsys):
    commands = _cost_parsers()
    assert set(commands) == {"train", "optimal", "memory", "serve", "plan"}
    for name, parser in commands.items():
        with pytest.raises(SystemExit) as e:
            main(["cost", name, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text, name
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help, f"cost {name}: {action.dest} has no help"
            flag = action.option_strings[0] if action.option_strings else action.metavar
            assert flag in text


def test_plan_passes_measured_costs_through(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "cost", "plan", "--json")       # the shipped example plan
    assert code == 0
    base = json.loads(out)
    assert base["verdict"] in ("gold mine", "marginal", "bubble") and base["months"]
    code, out, _ = run_cli(capsys, "cost", "plan", "--serving-cost-per-1m", "50",
                           "--training-cost", "1000", "--no-charts", "--json")
    assert code == 0
    dear = json.loads(out)
    assert dear["overrides"] == {"serving_cost_per_1m_tokens": 50.0, "training_cost": 1000.0}
    assert dear["summary"]["total_serving_cost"] > base["summary"]["total_serving_cost"]
    code, out, _ = run_cli(capsys, "cost", "plan", "--out", str(tmp_path / "report"))
    assert code == 0
    assert "verdict:" in out and "cash" in out and "chart:" in out
    assert "sensitivity" in out and "break-even" in out and "gross margin" in out
    assert all(p.endswith(".png") for p in json.loads(
        (tmp_path / "report" / "plan.json").read_text())["charts"])


def test_plan_errors_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "cost", "plan", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "cost", "plan", "--serving-cost-per-1m", "0")
    assert code == 2 and "serving_cost_per_1m: must be > 0" in err


def test_python_twins_return_what_json_prints():
    r = goldmine.cost_train(params=1_000_000, tokens=1_000_000)
    assert r["flops"] == 6e12
    assert goldmine.cost_optimal(flops=1e20)["points"]["rule"]["tokens_per_param"] == 20
    assert goldmine.cost_memory(model="tiny", hardware="cpu")["fits"]
    assert goldmine.cost_serve(tokens_per_s=10, hardware="cpu")["usd_per_request"] > 0
    assert goldmine.cost_plan(charts=False)["verdict"]


def test_plan_init_writes_the_example_to_edit(capsys, tmp_path):
    from goldmine.cost.plan import EXAMPLE_PLAN, run_plan

    target = tmp_path / "my-plan.yaml"
    code, out, _ = run_cli(capsys, "cost", "plan", "--init", str(target))
    assert code == 0 and "wrote" in out
    assert target.read_text() == EXAMPLE_PLAN.read_text()
    assert run_plan(target, charts=False)["months"] == run_plan(EXAMPLE_PLAN,
                                                                charts=False)["months"]
    code, _, err = run_cli(capsys, "cost", "plan", "--init", str(target))   # never overwritten
    assert code == 2 and "init:" in err and "already exists" in err
