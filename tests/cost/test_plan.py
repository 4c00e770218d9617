"""The business plan: P&L checked by hand, break-even, verdicts, sensitivity, files, validation."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from goldmine.cost.plan import EXAMPLE_PLAN, plan_from_request, run_plan, users_path
from goldmine.errors import GoldmineError


def tiny(**changes) -> dict:
    """3 months, 10 users each; every number small enough to check on paper."""
    plan = {
        "name": "tiny",
        "starting_cash": 1000,
        "users": {"per_month": [10, 10, 10]},
        "usage": {"requests_per_user": 100, "input_tokens": 1000, "output_tokens": 500},
        "pricing": {"per_seat": 20, "per_1m_input_tokens": 0, "per_1m_output_tokens": 10},
        "serving": {"per_1m_input_tokens": 1, "per_1m_output_tokens": 4,
                    "min_fleet_per_month": 50},
        "fixed": {"team": 100},
        "training": {"initial": 30, "retrain_every_months": 2, "retrain_cost": 5},
    }
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = plan
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return plan


def test_tiny_plan_matches_hand_computation():
    # per month: 1,000 requests; 1M input and 0.5M output tokens.
    # revenue 10*20 + 0.5*10 = 205; variable serving 1*1 + 0.5*4 = 3 < floor 50 -> 50
    # gross 155; training 30 in month 1, 5 in month 3 (every 2 months); fixed 100
    r = run_plan(tiny())
    m = r["months"]
    assert [x["revenue"] for x in m] == pytest.approx([205, 205, 205])
    assert [x["serving_variable"] for x in m] == pytest.approx([3, 3, 3])
    assert [x["serving_cost"] for x in m] == pytest.approx([50, 50, 50])
    assert [x["training_cost"] for x in m] == pytest.approx([30, 0, 5])
    assert [x["gross_profit"] for x in m] == pytest.approx([155, 155, 155])
    assert m[0]["gross_margin"] == pytest.approx(155 / 205)
    assert [x["operating_profit"] for x in m] == pytest.approx([25, 55, 50])
    assert [x["cumulative_profit"] for x in m] == pytest.approx([25, 80, 130])
    assert [x["cash"] for x in m] == pytest.approx([1025, 1080, 1130])
    assert m[0]["tokens"] == pytest.approx(1.5e6)
    s = r["summary"]
    assert s["total_revenue"] == pytest.approx(615)
    assert s["gross_margin"] == pytest.approx(465 / 615)
    assert r["break_even_month"] == s["break_even_month"] == 1
    assert r["payback_month"] == 1
    u = s["unit_economics"]
    assert u["revenue_per_user"] == pytest.approx(20.5)  # 20 + 50k output tokens at $10/1M
    assert u["serving_cost_per_user"] == pytest.approx(0.3)
    assert u["contribution_per_user"] == pytest.approx(20.2)
    assert u["revenue_per_1m_tokens"] == pytest.approx(20.5 / 0.15)
    # covering fixed 100 needs 100/20.2 users, covering fixed + floor needs 150/20.5
    assert u["users_to_break_even"] == pytest.approx(150 / 20.5)
    json.dumps(r, allow_nan=False)


def test_usage_above_the_fleet_floor_is_paid_per_token():
    r = run_plan(tiny(serving__min_fleet_per_month=2))  # variable serving (3) now exceeds it
    assert r["months"][0]["serving_cost"] == pytest.approx(3)


def test_users_compound_with_growth_minus_churn():
    assert users_path(100, 0.1, 0.05, 3) == pytest.approx([100, 105, 110.25])
    plan = tiny()
    plan["users"] = {"start": 100, "growth": 0.1, "churn": 0.05}
    plan["horizon_months"] = 3
    assert [m["users"] for m in run_plan(plan)["months"]] == pytest.approx([100, 105, 110.25])


def test_break_even_is_the_month_profit_turns_positive_for_good():
    # $10 a seat, fixed $250: operating profit -150, -50, 50, 150; cumulative -150, -200, -150, 0
    plan = tiny(users__per_month=[10, 20, 30, 40], pricing__per_1m_output_tokens=0,
                serving__per_1m_input_tokens=0, serving__per_1m_output_tokens=0,
                serving__min_fleet_per_month=0, fixed__team=250, training__initial=0,
                training__retrain_every_months=0, pricing__per_seat=10)
    r = run_plan(plan)
    assert [m["operating_profit"] for m in r["months"]] == pytest.approx([-150, -50, 50, 150])
    assert r["break_even_month"] == 3
    assert r["summary"]["users_at_break_even"] == 30
    assert r["payback_month"] == 4  # cumulative profit back to exactly 0
    # a profitable first month that dips again does not count: break-even is where it stays
    plan["users"]["per_month"] = [30, 10, 30, 30]
    assert run_plan(plan)["break_even_month"] == 3


def test_users_who_cost_more_than_they_pay_make_a_bubble():
    plan = tiny(pricing__per_seat=1, pricing__per_1m_output_tokens=0)  # pays $1, costs $0.30...
    plan["usage"]["requests_per_user"] = 1000  # ...now $3 a user
    r = run_plan(plan)
    assert r["verdict"] == "bubble"
    assert "Gross margin per user is negative" in r["reasons"][0]
    assert r["summary"]["unit_economics"]["contribution_per_user"] == pytest.approx(1 - 3)


def test_flat_and_unprofitable_is_a_bubble_growing_towards_profit_is_marginal():
    flat = tiny(fixed__team=1000, users__per_month=[10] * 12)
    r = run_plan(flat)
    assert (r["verdict"], r["break_even_month"]) == ("bubble", None)
    assert "not improving" in r["reasons"][1]
    growing = tiny(fixed__team=1000, users__per_month=[10 + m for m in range(12)])
    r = run_plan(growing)
    assert (r["verdict"], r["break_even_month"]) == ("marginal", None)
    assert "shrinking" in r["reasons"][1]


def test_profitable_plan_is_a_gold_mine():
    r = run_plan(tiny(pricing__per_seat=100))
    assert r["verdict"] == "gold mine"
    assert r["summary"]["gross_margin"] >= 0.5
    assert len(r["reasons"]) == 3


def test_raising_the_price_never_lowers_final_cash():
    plan = yaml.safe_load(EXAMPLE_PLAN.read_text())
    cash = []
    for price in (10, 20, 30, 40, 60):
        plan["pricing"]["per_seat"] = price
        cash.append(run_plan(plan, charts=False)["summary"]["final_cash"])
    assert cash == sorted(cash)
    rows = {(r["input"], round(r["change"], 2)): r for r in run_plan(plan)["sensitivity"]}
    base = rows[("base", 0)]["final_cash"]
    assert rows[("price", -0.2)]["final_cash"] <= base <= rows[("price", 0.2)]["final_cash"]
    assert rows[("fixed costs", 0.2)]["final_cash"] <= base
    assert {name for name, _ in rows} == {"base", "price", "usage", "serving cost", "growth",
                                          "fixed costs"}


def test_tornado_ranks_inputs_by_how_far_they_move_final_cash():
    tornado = run_plan(EXAMPLE_PLAN)["tornado"]
    spreads = [t["spread"] for t in tornado]
    assert spreads == sorted(spreads, reverse=True)
    assert all(t["spread"] == pytest.approx(abs(t["high"] - t["low"])) for t in tornado)


def test_measured_serving_cost_overrides_the_plan():
    r = run_plan(tiny(serving__min_fleet_per_month=0), serving_cost_per_1m_tokens=10)
    # 1.5M tokens a month at $10/1M, input and output alike
    assert r["months"][0]["serving_cost"] == pytest.approx(15)
    assert r["inputs"]["serving"]["per_1m_input_tokens"] == 10
    assert r["overrides"]["serving_cost_per_1m_tokens"] == 10


def test_measured_training_cost_overrides_the_initial_run():
    r = run_plan(tiny(), training_cost=200)
    assert r["months"][0]["training_cost"] == 200
    assert r["months"][2]["training_cost"] == 5  # the plan prices re-training itself
    plan = tiny()
    del plan["training"]["retrain_cost"]  # re-training then costs what a run costs
    assert run_plan(plan, training_cost=200)["months"][2]["training_cost"] == 200


def test_resolved_inputs_are_a_plan_that_gives_the_same_result():
    r = run_plan(EXAMPLE_PLAN, serving_cost_per_1m_tokens=0.5, training_cost=900)
    again = run_plan(r["inputs"])
    assert again["months"] == r["months"]
    assert again["verdict"] == r["verdict"]


def test_out_writes_charts_json_and_markdown(tmp_path):
    r = run_plan(tiny(), out=tmp_path / "plan")
    assert [p.rsplit("/", 1)[-1] for p in r["charts"]] == ["pnl.png", "cash.png",
                                                           "sensitivity.png"]
    for path in r["charts"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert saved["verdict"] == r["verdict"]
    assert saved["months"][0]["revenue"] == pytest.approx(205)
    md = (tmp_path / "plan" / "plan.md").read_text()
    assert md.startswith(f"# tiny: {r['verdict']}")
    assert "| 3 | 10 | $205 | $50 | $5 | $100 | 76% | $50 | $1,130 |" in md
    assert "## Sensitivity" in md
    assert r["report"] == str(tmp_path / "plan" / "plan.md")
    assert not list((tmp_path / "plan").glob(".*"))  # no temp files left behind

    r = run_plan(tiny(), out=tmp_path / "bare", charts=False)
    assert r["charts"] == [] and not list((tmp_path / "bare").glob("*.png"))
    assert run_plan(tiny())["report"] is None
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(GoldmineError, match=r"taken: cannot write the plan report there"):
        run_plan(tiny(), out=tmp_path / "taken")


def test_a_yaml_file_error_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "plan.yaml"
    plan = tiny()
    plan["pricing"]["per_seat"] = -5
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(GoldmineError, match=r"plan.yaml: pricing.per_seat: must be >= 0, got -5$"):
        run_plan(path)
    path.write_text("users: [1, 2\n")
    with pytest.raises(GoldmineError, match=r"plan.yaml: line \d+: not valid YAML"):
        run_plan(path)
    with pytest.raises(GoldmineError, match=r"missing.yaml: plan file not found"):
        run_plan(tmp_path / "missing.yaml")


@pytest.mark.parametrize("change, message", [
    ({"pricing__per_seet": 30}, r"pricing.per_seet: unknown field \(did you mean 'per_seat'\?\)"),
    ({"budget": 1}, r"plan: budget: unknown field"),
    ({"usage__input_tokens": "800"}, r"usage.input_tokens: must be a number, got '800'"),
    ({"usage__input_tokens": True}, r"usage.input_tokens: must be a number, got True"),
    ({"users__per_month": [10, -1, 10]}, r"users.per_month\[1\]: must be >= 0, got -1"),
    ({"users__start": 10}, r"users.start: give users.per_month or start/growth/churn"),
    ({"horizon_months": 4}, r"users.per_month: has 3 months but horizon_months is 4"),
    ({"users__churn": 1.5}, r"users.churn: must be <= 1, got 1.5"),
    ({"training__retrain_every_months": 2.5}, r"retrain_every_months: must be a whole number"),
    ({"fixed__team": -1}, r"fixed.team: must be >= 0, got -1"),
    ({"fixed": [100]}, r"fixed: must be a mapping of name: \$ per month, got a list"),
    ({"serving": 5}, r"serving: must be a mapping of field: value, got int"),
    ({"serving__per_1m_tokens": 1}, r"serving.per_1m_input_tokens: give per_1m_tokens or"),
    ({"usage__output_tokens": None}, r"usage.output_tokens: required"),
    ({"pricing": {}}, r"pricing: give per_seat and/or a price per 1M tokens"),
    ({"serving": {}}, r"serving: give a serving cost"),
    ({"starting_cash": float("nan")}, r"starting_cash: must be a finite number"),
    ({"starting_cash": 10**400}, r"starting_cash: must be a finite number, got an integer"),
])
def test_validation_names_the_field(change, message):
    with pytest.raises(GoldmineError, match=message):
        run_plan(tiny(**change))


def test_overrides_are_validated_too():
    with pytest.raises(GoldmineError, match=r"serving_cost_per_1m_tokens: must be >= 0, got -1"):
        run_plan(tiny(), serving_cost_per_1m_tokens=-1)
    with pytest.raises(GoldmineError, match=r"training_cost: must be a number, got 'lots'"):
        run_plan(tiny(), training_cost="lots")


def test_plan_from_request_runs_without_files_and_names_the_field():
    r = plan_from_request({**tiny(), "serving_cost_per_1m_tokens": 10})
    assert r["charts"] == [] and r["report"] is None
    assert r["months"][0]["serving_cost"] == pytest.approx(50)  # 15 variable, under the floor
    assert r["verdict"] == run_plan(tiny(), serving_cost_per_1m_tokens=10)["verdict"]
    bad = copy.deepcopy(tiny())
    bad["pricing"]["per_seat"] = -5
    with pytest.raises(GoldmineError, match=r"^request: pricing.per_seat: must be >= 0") as e:
        plan_from_request(bad)
    assert e.value.field == "pricing.per_seat"
    with pytest.raises(GoldmineError, match=r"request: expected a JSON object"):
        plan_from_request([1, 2])


def test_shipped_example_opens_with_its_command_comments_every_field_and_runs():
    text = EXAMPLE_PLAN.read_text()
    assert text.splitlines()[0].startswith("# goldmine cost plan")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"field without a comment: {line!r}"
    r = run_plan(EXAMPLE_PLAN)
    assert r["verdict"] in ("gold mine", "marginal", "bubble")
    assert r["inputs"]["name"] == "support assistant"
    assert len(r["months"]) == r["inputs"]["horizon_months"] == 36
    assert len(r["reasons"]) == 3
