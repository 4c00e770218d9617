"""The business plan: a monthly P&L over a horizon, break-even, sensitivity and a verdict.

`goldmine cost plan PLAN.yaml` answers the question behind the project's name: does serving
this model earn more than it costs? The plan is a small YAML file (see `plans/example.yaml`
and `SCHEMA` below); the serving cost per 1M tokens and the cost of a training run can come
from goldmine's own measurements instead (`serving_cost_per_1m_tokens=`, `training_cost=`),
so the answer rests on numbers this machine produced rather than on guesses.

How a month is computed (pure functions below, one formula each):

    users          start * (1 + growth - churn) ** (month - 1), or the plan's own list
    revenue        users * (price per seat + requests * tokens * price per 1M tokens / 1e6)
    serving cost   max(users * requests * tokens * cost per 1M tokens / 1e6, fleet floor)
                   -- the floor is what an always-on fleet costs; usage below its capacity
                   costs nothing more, usage above it is paid per token
    training       the initial run in month 1, a re-training run every N months after
    gross profit   revenue - serving cost            (serving is the cost of goods sold)
    operating      gross profit - training - fixed costs
    cash           starting cash + the operating profits so far

Break-even is defined twice, because founders ask two questions:

* `break_even_month`: the first month from which operating profit is >= 0 in every month
  left in the horizon ("are we profitable now, for good?");
* `payback_month`: the first month from which cumulative operating profit is >= 0 for the
  rest of the horizon ("have we earned back everything we spent?").

The verdict, decided by `decide`:

* **bubble** -- each user loses money (gross margin per user < 0: a user pays less than the
  tokens they use cost to serve, so growth only deepens the loss), or there is no
  break-even within the horizon and the trend is not improving (the last month's operating
  profit before training is no better than the first month's).
* **gold mine** -- gross margin over the horizon >= 50%, break-even within the horizon and
  payback within the horizon (cumulative profit >= 0 at the end).
* **marginal** -- anything else: the unit economics work but the business does not pay for
  itself within the horizon, or it does on a thin margin.

The sensitivity table moves one input at a time by -20% and +20% (price, usage, serving
cost, growth, fixed costs) and reruns the whole plan; the tornado ranks the inputs by how
far they move the final cumulative cash.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from goldmine.errors import GoldmineError
from goldmine.files import write_json, write_text

EXAMPLE_PLAN = Path(__file__).parent / "plans" / "example.yaml"
GOLD_MINE_GROSS_MARGIN = 0.5  # the gross margin a software business is expected to clear
SWING = 0.2  # how far the sensitivity table moves each input, both ways
_EPS = 1e-6  # a millionth of a dollar: floating-point noise is not a loss


class PlanError(GoldmineError):
    """A bad plan, naming where it came from and the field at fault (for the web page too)."""

    def __init__(self, source: str, field: str, message: str):
        self.source, self.field, self.reason = source, field, message
        super().__init__(": ".join(p for p in (source, field, message) if p))


# ---------------------------------------------------------------------------------------------
# Schema: every field, its kind, default, bounds and meaning (the docs of the YAML file)
# ---------------------------------------------------------------------------------------------


class Spec(NamedTuple):
    kind: str  # "int", "number", "text", "numbers" (a list) or "costs" (name: $ per month)
    default: Any
    help: str
    lo: float | None = 0.0
    hi: float | None = None


SCHEMA: dict[str, Any] = {
    "name": Spec("text", "business plan", "what the plan is called (the report's title)", None),
    "horizon_months": Spec("int", 24, "months to simulate (default 24; the length of "
                                      "users.per_month when that is given)", 1, 120),
    "starting_cash": Spec("number", 0.0, "cash in the bank at the start, $ (e.g. a seed round)"),
    "users": {
        "start": Spec("number", None, "paying users (seats) in month 1"),
        "growth": Spec("number", 0.0, "new users each month as a fraction of the current ones "
                                      "(0.15 = +15%/month)", 0.0, 10.0),
        "churn": Spec("number", 0.0, "fraction of users lost each month", 0.0, 1.0),
        "per_month": Spec("numbers", None, "users for every month instead of start/growth/churn"),
    },
    "usage": {
        "requests_per_user": Spec("number", None, "requests each user makes per month"),
        "input_tokens": Spec("number", None, "prompt tokens per request (system prompt, "
                                             "retrieved context and question)"),
        "output_tokens": Spec("number", None, "generated tokens per request"),
    },
    "pricing": {
        "per_seat": Spec("number", 0.0, "subscription price per user per month, $"),
        "per_1m_tokens": Spec("number", None, "usage price per 1M tokens, input and output alike"),
        "per_1m_input_tokens": Spec("number", None, "usage price per 1M input tokens, $"),
        "per_1m_output_tokens": Spec("number", None, "usage price per 1M output tokens, $"),
    },
    "serving": {
        "per_1m_tokens": Spec("number", None, "serving cost per 1M tokens, input and output "
                                              "alike (what `goldmine cost serve` measures)"),
        "per_1m_input_tokens": Spec("number", None, "serving cost per 1M input tokens, $"),
        "per_1m_output_tokens": Spec("number", None, "serving cost per 1M output tokens, $"),
        "min_fleet_per_month": Spec("number", 0.0, "the least the serving fleet costs a month "
                                                   "(e.g. one GPU always on), $"),
    },
    "fixed": Spec("costs", {}, "fixed costs per month by name (team, storage, other...), $"),
    "training": {
        "initial": Spec("number", 0.0, "cost of the first training run, paid in month 1, $"),
        "retrain_every_months": Spec("int", 0, "re-train every N months (0 = never)", 0, 120),
        "retrain_cost": Spec("number", None, "cost of each re-training run, $ (default: initial)"),
    },
}

# Either a blended per-1M figure or the input/output pair, never both.
_PER_1M = ("per_1m_tokens", "per_1m_input_tokens", "per_1m_output_tokens")


def schema_rows() -> list[tuple[str, str, Any, str]]:
    """(field, kind, default, help) for every field: what `--help` and the docs can print."""
    rows = []
    for key, spec in SCHEMA.items():
        if isinstance(spec, dict):
            rows += [(f"{key}.{k}", s.kind, s.default, s.help) for k, s in spec.items()]
        else:
            rows.append((key, spec.kind, spec.default, spec.help))
    return rows


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


def load_plan(plan: dict | str | Path, source: str | None = None) -> tuple[dict, str]:
    """Read a plan (a YAML file or a dict) and validate it; returns (plan, source name)."""
    if isinstance(plan, (str, Path)):
        path = Path(plan)
        source = source or str(plan)
        if not path.is_file():
            raise PlanError(source, "", "plan file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else ""
            raise PlanError(source, where, f"not valid YAML ({getattr(e, 'problem', e)})") from None
        except UnicodeDecodeError:
            raise PlanError(source, "", "not UTF-8 text") from None
    else:
        raw, source = plan, source or "plan"
    if not isinstance(raw, dict):
        raise PlanError(source, "", f"expected a mapping of field: value, got {_kind(raw)}")
    return validate(raw, source), source


def validate(raw: dict, source: str = "plan") -> dict:
    """Check every field against SCHEMA; return the plan with defaults filled in.

    Fields left out come back as their default (None for "not given"), so later code reads
    every field without guessing. Cross-field rules (a price must be given, per_month or
    start, ...) are checked here too, so an invalid plan never reaches the arithmetic.
    """

    fail = _failer(source)
    plan = _validate_section(raw, SCHEMA, "", fail)
    users, pricing, serving = plan["users"], plan["pricing"], plan["serving"]

    if users["per_month"] is not None:
        given = [k for k in ("start", "growth", "churn") if raw["users"].get(k) is not None]
        if given:
            fail(f"users.{given[0]}", "give users.per_month or start/growth/churn, not both")
        if not users["per_month"]:
            fail("users.per_month", "needs at least one month")
        months = len(users["per_month"])
        if raw.get("horizon_months") is not None and plan["horizon_months"] != months:
            fail("users.per_month", f"has {months} months but horizon_months "
                                    f"is {plan['horizon_months']}")
        if months > SCHEMA["horizon_months"].hi:
            fail("users.per_month", f"at most {SCHEMA['horizon_months'].hi:g} months")
        plan["horizon_months"] = months
        users.update(start=None, growth=None, churn=None)
    elif users["start"] is None:
        fail("users.start", "required (or give users.per_month)")

    for key in ("requests_per_user", "input_tokens", "output_tokens"):
        if plan["usage"][key] is None:
            fail(f"usage.{key}", "required")

    for name, section in (("pricing", pricing), ("serving", serving)):
        _check_per_1m(section, name, fail)
    if pricing["per_seat"] == 0 and all(pricing[k] is None for k in _PER_1M):
        fail("pricing", "give per_seat and/or a price per 1M tokens "
                        "(per_1m_tokens or per_1m_input_tokens + per_1m_output_tokens)")
    return plan


def _check_per_1m(section: dict, name: str, fail: Callable) -> None:
    if section["per_1m_tokens"] is not None:
        split = [k for k in _PER_1M[1:] if section[k] is not None]
        if split:
            fail(f"{name}.{split[0]}", "give per_1m_tokens or per_1m_input_tokens + "
                                       "per_1m_output_tokens, not both")


def _validate_section(raw: Any, schema: dict, prefix: str, fail: Callable) -> dict:
    if not isinstance(raw, dict):
        fail(prefix.rstrip("."), f"must be a mapping of field: value, got {_kind(raw)}")
    out = {}
    for key in raw:
        if key not in schema:
            hint = difflib.get_close_matches(str(key), list(schema), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            fail(f"{prefix}{key}", f"unknown field{extra}; known: {', '.join(schema)}")
    for key, spec in schema.items():
        field = f"{prefix}{key}"
        if isinstance(spec, dict):
            section = raw.get(key)
            out[key] = _validate_section({} if section is None else section, spec, f"{field}.",
                                         fail)
        elif raw.get(key) is None:
            out[key] = copy.deepcopy(spec.default)
        else:
            out[key] = _check_value(raw[key], spec, field, fail)
    return out


def _failer(source: str) -> Callable[[str, str], None]:
    def fail(field: str, message: str):
        raise PlanError(source, field, message)

    return fail


def _check_value(value: Any, spec: Spec, field: str, fail: Callable) -> Any:
    if spec.kind == "text":
        if not isinstance(value, str):
            fail(field, f"must be text, got {value!r}")
        return value
    if spec.kind == "numbers":
        if not isinstance(value, list):
            fail(field, f"must be a list of numbers, got {_kind(value)}")
        return [_check_number(v, spec, f"{field}[{i}]", fail) for i, v in enumerate(value)]
    if spec.kind == "costs":
        if not isinstance(value, dict):
            fail(field, f"must be a mapping of name: $ per month, got {_kind(value)}")
        return {str(k): _check_number(v, spec, f"{field}.{k}", fail) for k, v in value.items()}
    return _check_number(value, spec, field, fail)


def _check_number(value: Any, spec: Spec, field: str, fail: Callable) -> float | int:
    # bool is an int in Python, but `per_seat: yes` is a mistake, not 1 dollar.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(field, f"must be a number, got {value!r}")
    if isinstance(value, int) and abs(value) > 1e300:  # math.isfinite would overflow
        fail(field, f"must be a finite number, got an integer of {len(str(abs(value)))} digits")
    if not math.isfinite(value):
        fail(field, f"must be a finite number, got {value!r}")
    if spec.kind == "int":
        if value != int(value):
            fail(field, f"must be a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if spec.lo is not None and value < spec.lo:
        fail(field, f"must be >= {spec.lo:g}, got {value:g}")
    if spec.hi is not None and value > spec.hi:
        fail(field, f"must be <= {spec.hi:g}, got {value:g}")
    return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text"}.get(type(value), type(value).__name__)


def resolve(plan: dict, serving_cost_per_1m_tokens: float | None = None,
            training_cost: float | None = None, source: str = "plan") -> dict:
    """Apply measured overrides and fill derived defaults; the result is itself a valid plan.

    `serving_cost_per_1m_tokens` (measured by goldmine's serving benchmark) replaces the plan's
    serving cost for input and output tokens alike; `training_cost` (a measured run) replaces
    `training.initial`, and so re-training too when the plan does not price it separately.
    """
    plan = copy.deepcopy(plan)
    for name, value in (("serving_cost_per_1m_tokens", serving_cost_per_1m_tokens),
                        ("training_cost", training_cost)):
        if value is not None:
            _check_number(value, Spec("number", None, ""), name, _failer(source))
    serving, pricing, training = plan["serving"], plan["pricing"], plan["training"]
    if serving_cost_per_1m_tokens is not None:
        serving.update(per_1m_tokens=float(serving_cost_per_1m_tokens),
                       per_1m_input_tokens=None, per_1m_output_tokens=None)
    if training_cost is not None:
        training["initial"] = float(training_cost)
    if all(serving[k] is None for k in _PER_1M):
        raise PlanError(source, "serving", "give a serving cost: per_1m_tokens or "
                                           "per_1m_input_tokens + per_1m_output_tokens")
    for section in (pricing, serving):
        # One form only in the resolved plan: the input/output pair (missing half costs 0).
        blended = section.pop("per_1m_tokens")
        for key in _PER_1M[1:]:
            section[key] = blended if blended is not None else (section[key] or 0.0)
    if training["retrain_cost"] is None:
        training["retrain_cost"] = training["initial"]
    if plan["users"]["per_month"] is not None:
        plan["users"] = {"per_month": plan["users"]["per_month"]}
    else:
        plan["users"].pop("per_month")
    return plan


# ---------------------------------------------------------------------------------------------
# The arithmetic: pure functions over plain numbers
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Economics:
    """The plan reduced to the numbers the P&L needs (what sensitivity scenarios perturb)."""

    users: tuple[float, ...]  # per month
    requests_per_user: float
    input_tokens: float  # per request
    output_tokens: float
    price_per_seat: float
    price_per_1m_input: float
    price_per_1m_output: float
    cost_per_1m_input: float
    cost_per_1m_output: float
    min_fleet: float
    fixed: float  # per month, all lines together
    training: tuple[float, ...]  # per month
    starting_cash: float


def users_path(start: float, growth: float, churn: float, months: int) -> list[float]:
    """Users in each month: compounding at (1 + growth - churn) from `start` in month 1."""
    return [start * (1 + growth - churn) ** m for m in range(months)]


def training_schedule(initial: float, every: int, retrain_cost: float, months: int) -> list[float]:
    """Training spend per month: `initial` in month 1, `retrain_cost` every `every` months."""
    spend = [0.0] * months
    spend[0] = initial
    if every:
        for m in range(every, months, every):
            spend[m] += retrain_cost
    return spend


def economics(plan: dict, growth_factor: float = 1.0) -> Economics:
    """Economics of a resolved plan; `growth_factor` scales growth (for sensitivity)."""
    h, users = plan["horizon_months"], plan["users"]
    if "per_month" in users:
        first = users["per_month"][0]
        path = [first + (u - first) * growth_factor for u in users["per_month"]]
    else:
        path = users_path(users["start"], users["growth"] * growth_factor, users["churn"], h)
    t, p, s = plan["training"], plan["pricing"], plan["serving"]
    return Economics(
        users=tuple(max(u, 0.0) for u in path),
        requests_per_user=plan["usage"]["requests_per_user"],
        input_tokens=plan["usage"]["input_tokens"],
        output_tokens=plan["usage"]["output_tokens"],
        price_per_seat=p["per_seat"],
        price_per_1m_input=p["per_1m_input_tokens"],
        price_per_1m_output=p["per_1m_output_tokens"],
        cost_per_1m_input=s["per_1m_input_tokens"],
        cost_per_1m_output=s["per_1m_output_tokens"],
        min_fleet=s["min_fleet_per_month"],
        fixed=sum(plan["fixed"].values()),
        training=tuple(training_schedule(t["initial"], t["retrain_every_months"],
                                         t["retrain_cost"], h)),
        starting_cash=plan["starting_cash"],
    )


def unit_economics(e: Economics) -> dict[str, float | None]:
    """What one user brings and costs a month, independent of how many users there are.

    `users_to_break_even` is the fewest users whose monthly operating profit (before training)
    is >= 0: contribution must cover the fixed costs, and revenue must cover fixed costs plus
    the fleet floor (operating profit = min(contribution*u - fixed, revenue*u - floor - fixed)).
    """
    tokens = e.requests_per_user * (e.input_tokens + e.output_tokens)
    revenue = e.price_per_seat + e.requests_per_user * (
        e.input_tokens * e.price_per_1m_input + e.output_tokens * e.price_per_1m_output) / 1e6
    cost = e.requests_per_user * (
        e.input_tokens * e.cost_per_1m_input + e.output_tokens * e.cost_per_1m_output) / 1e6
    contribution = revenue - cost
    if contribution > 0:
        need = max(e.fixed / contribution, (e.fixed + e.min_fleet) / revenue)
    else:
        need = None if (e.fixed + e.min_fleet) > 0 or contribution < 0 else 0.0
    return {
        "revenue_per_user": revenue,
        "serving_cost_per_user": cost,
        "contribution_per_user": contribution,
        "gross_margin_per_user": _ratio(contribution, revenue),
        "tokens_per_user": tokens,
        "revenue_per_1m_tokens": _ratio(revenue * 1e6, tokens),
        "serving_cost_per_1m_tokens": _ratio(cost * 1e6, tokens),
        "users_to_break_even": need,
    }


def month_pnl(month: int, users: float, e: Economics) -> dict[str, float]:
    """One month's P&L for `users` users (month counts from 1)."""
    requests = users * e.requests_per_user
    tin, tout = requests * e.input_tokens, requests * e.output_tokens
    revenue = users * e.price_per_seat + (tin * e.price_per_1m_input
                                          + tout * e.price_per_1m_output) / 1e6
    variable = (tin * e.cost_per_1m_input + tout * e.cost_per_1m_output) / 1e6
    serving = max(variable, e.min_fleet)
    training = e.training[month - 1]
    gross = revenue - serving
    return {
        "month": month, "users": users, "requests": requests,
        "input_tokens": tin, "output_tokens": tout, "tokens": tin + tout,
        "revenue": revenue, "serving_variable": variable, "serving_cost": serving,
        "training_cost": training, "fixed_costs": e.fixed,
        "gross_profit": gross, "gross_margin": _ratio(gross, revenue),
        "operating_profit": gross - training - e.fixed,
    }


def monthly_pnl(e: Economics) -> list[dict[str, float]]:
    """Every month's P&L with running totals: cumulative profit and cash in the bank."""
    months, cumulative = [], 0.0
    for i, users in enumerate(e.users):
        row = month_pnl(i + 1, users, e)
        cumulative += row["operating_profit"]
        row["cumulative_profit"] = cumulative
        row["cash"] = e.starting_cash + cumulative
        months.append(row)
    return months


def first_month_staying_nonnegative(values: list[float]) -> int | None:
    """The first month (from 1) from which every value to the end is >= 0; None if the last
    is negative. Used for both break-even (monthly profit) and payback (cumulative)."""
    month = None
    for i in range(len(values) - 1, -1, -1):
        if values[i] < -_EPS:
            break
        month = i + 1
    return month


def summarize(e: Economics, months: list[dict]) -> dict[str, Any]:
    """Totals, margins, break-even, payback, cash low point and unit economics."""
    total = {k: sum(m[k] for m in months) for k in (
        "revenue", "serving_cost", "training_cost", "fixed_costs", "gross_profit",
        "operating_profit", "tokens", "requests", "users")}
    be = first_month_staying_nonnegative([m["operating_profit"] for m in months])
    payback = first_month_staying_nonnegative([m["cumulative_profit"] for m in months])
    low = min(months, key=lambda m: m["cash"])
    broke = next((m["month"] for m in months if m["cash"] < -_EPS), None)
    first, last = months[0], months[-1]
    costs = total["serving_cost"] + total["training_cost"] + total["fixed_costs"]
    unit = unit_economics(e)
    unit.update({
        "revenue_per_user_month": _ratio(total["revenue"], total["users"]),
        "cost_per_user_month": _ratio(costs, total["users"]),
        "revenue_per_1m_tokens_served": _ratio(total["revenue"] * 1e6, total["tokens"]),
        "cost_per_1m_tokens_served": _ratio(costs * 1e6, total["tokens"]),
    })
    return {
        "horizon_months": len(months),
        "total_revenue": total["revenue"],
        "total_serving_cost": total["serving_cost"],
        "total_training_cost": total["training_cost"],
        "total_fixed_costs": total["fixed_costs"],
        "total_costs": costs,
        "gross_profit": total["gross_profit"],
        "gross_margin": _ratio(total["gross_profit"], total["revenue"]),
        "operating_profit": total["operating_profit"],
        "user_months": total["users"],
        "tokens": total["tokens"],
        "requests": total["requests"],
        "break_even_month": be,
        "users_at_break_even": months[be - 1]["users"] if be else None,
        "payback_month": payback,
        "final_users": last["users"],
        "final_monthly_revenue": last["revenue"],
        "final_monthly_operating_profit": last["operating_profit"],
        "starting_cash": e.starting_cash,
        "final_cumulative_profit": last["cumulative_profit"],
        "final_cash": last["cash"],
        "lowest_cash": low["cash"],
        "lowest_cash_month": low["month"],
        "out_of_cash_month": broke,
        # the trend: monthly operating profit before training, last month against the first
        "trend_improving": len(months) > 1 and _before_training(last) > _before_training(first),
        "unit_economics": unit,
    }


def _before_training(month: dict) -> float:
    return month["gross_profit"] - month["fixed_costs"]


def decide(s: dict[str, Any]) -> tuple[str, list[str]]:
    """The verdict (rules in the module docstring) and the numbers that decide it, as sentences."""
    unit, h = s["unit_economics"], s["horizon_months"]
    unit_gm = unit["gross_margin_per_user"]
    losing_users = unit["contribution_per_user"] < -_EPS
    if losing_users:
        verdict = "bubble"
    elif s["break_even_month"] is None and not s["trend_improving"]:
        verdict = "bubble"
    elif (s["gross_margin"] is not None and s["gross_margin"] >= GOLD_MINE_GROSS_MARGIN
          and s["break_even_month"] and s["payback_month"]):
        verdict = "gold mine"
    else:
        verdict = "marginal"

    rev = money(unit["revenue_per_user"], cents=True)
    cost = money(unit["serving_cost_per_user"], cents=True)
    if losing_users and unit_gm is None:
        margin = f"Gross margin is negative: users pay nothing and cost {cost}/month each to serve."
    elif losing_users:
        margin = (f"Gross margin per user is negative ({unit_gm:.0%}): a user pays {rev}/month "
                  f"and costs {cost} to serve, so every new user deepens the loss.")
    elif s["gross_margin"] is None:
        margin = "There is no revenue, so no gross margin."
    else:
        margin = (f"Gross margin over {_plural(h, 'month')} is {s['gross_margin']:.0%}: "
                  f"serving costs {money(s['total_serving_cost'])} of "
                  f"{money(s['total_revenue'])} revenue")
        if unit_gm is not None and unit_gm - s["gross_margin"] > 0.1:
            margin += f" (per user it is {unit_gm:.0%}: the always-on fleet weighs on it)"
        margin += "."

    if s["break_even_month"]:
        be = (f"Operating profit turns positive in month {s['break_even_month']} at "
              f"{s['users_at_break_even']:,.0f} users and stays positive.")
    else:
        need = unit["users_to_break_even"]
        needs = f"; break-even needs {need:,.0f} users" if need is not None else ""
        trend = ("the monthly loss is shrinking" if s["trend_improving"]
                 else "the monthly result is not improving")
        be = (f"No break-even within {_plural(h, 'month')}: month {h} makes "
              f"{money(s['final_monthly_operating_profit'])} with {s['final_users']:,.0f} "
              f"users{needs}; {trend}.")

    if s["payback_month"]:
        cash = (f"Cumulative profit turns positive in month {s['payback_month']} and ends at "
                f"{money(s['final_cumulative_profit'])}.")
    else:
        low = s["lowest_cash"] - s["starting_cash"]
        cash = (f"Cumulative profit ends at {money(s['final_cumulative_profit'])}; it takes "
                f"{money(-low)} of funding (lowest in month {s['lowest_cash_month']})")
        if s["out_of_cash_month"] and s["starting_cash"] > 0:
            cash += (f", and the starting {money(s['starting_cash'])} runs out in month "
                     f"{s['out_of_cash_month']}")
        cash += "."
    return verdict, [margin, be, cash]


def evaluate(e: Economics) -> dict[str, Any]:
    """Months, summary and verdict for one set of economics (the base case or a scenario)."""
    months = monthly_pnl(e)
    summary = summarize(e, months)
    verdict, reasons = decide(summary)
    summary["verdict"] = verdict
    return {"months": months, "summary": summary, "verdict": verdict, "reasons": reasons}


# ---------------------------------------------------------------------------------------------
# Sensitivity: one input at a time, -SWING and +SWING
# ---------------------------------------------------------------------------------------------


def _scale(e: Economics, f: float, *names: str) -> Economics:
    return dataclasses.replace(e, **{n: getattr(e, n) * f for n in names})


SCENARIOS: dict[str, Callable[[dict, float], Economics]] = {
    "price": lambda p, f: _scale(economics(p), f, "price_per_seat", "price_per_1m_input",
                                 "price_per_1m_output"),
    "usage": lambda p, f: _scale(economics(p), f, "requests_per_user"),
    "serving cost": lambda p, f: _scale(economics(p), f, "cost_per_1m_input",
                                        "cost_per_1m_output", "min_fleet"),
    "growth": lambda p, f: economics(p, growth_factor=f),
    "fixed costs": lambda p, f: _scale(economics(p), f, "fixed"),
}


def sensitivity(plan: dict, swing: float = SWING) -> tuple[list[dict], list[dict]]:
    """The sensitivity rows (base first) and the tornado (inputs ranked by their spread)."""

    def row(name: str, factor: float) -> dict:
        e = economics(plan) if name == "base" else SCENARIOS[name](plan, factor)
        s = evaluate(e)["summary"]
        return {"input": name, "change": factor - 1, "final_cash": s["final_cash"],
                "final_cumulative_profit": s["final_cumulative_profit"],
                "break_even_month": s["break_even_month"], "payback_month": s["payback_month"],
                "gross_margin": s["gross_margin"], "verdict": s["verdict"]}

    base = row("base", 1.0)
    rows, tornado = [base], []
    for name in SCENARIOS:
        low, high = row(name, 1 - swing), row(name, 1 + swing)
        rows += [low, high]
        tornado.append({"input": name, "low": low["final_cash"], "high": high["final_cash"],
                        "spread": abs(high["final_cash"] - low["final_cash"])})
    tornado.sort(key=lambda t: -t["spread"])
    return rows, tornado


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def run_plan(plan: dict | str | Path, *, serving_cost_per_1m_tokens: float | None = None,
             training_cost: float | None = None, out: str | Path | None = None,
             charts: bool = True) -> dict[str, Any]:
    """Run a business plan: monthly P&L, break-even, sensitivity and a verdict.

    With `out`, writes plan.json, plan.md and (with `charts`) PNG charts there.
    """
    validated, source = load_plan(plan)
    return _run(validated, source, serving_cost_per_1m_tokens, training_cost, out, charts)


def plan_from_request(body: Any) -> dict[str, Any]:
    """Run a plan sent as JSON (the playground's plan page): same checks, no files, no charts.

    The body is the plan itself, optionally with `serving_cost_per_1m_tokens` and
    `training_cost` beside it; a `PlanError` names the field at fault (`error.field`).
    """
    if not isinstance(body, dict):
        raise PlanError("request", "", f"expected a JSON object (the plan), got {_kind(body)}")
    body = dict(body)
    overrides = [body.pop(k, None) for k in ("serving_cost_per_1m_tokens", "training_cost")]
    return _run(load_plan(body, "request")[0], "request", *overrides, out=None, charts=False)


def _run(validated: dict, source: str, serving_cost_per_1m_tokens: float | None,
         training_cost: float | None, out: str | Path | None, charts: bool) -> dict[str, Any]:
    inputs = resolve(validated, serving_cost_per_1m_tokens, training_cost, source)
    result = evaluate(economics(inputs))
    rows, tornado = sensitivity(inputs)
    result = {
        "inputs": inputs,
        "source": source,
        "overrides": {"serving_cost_per_1m_tokens": serving_cost_per_1m_tokens,
                      "training_cost": training_cost},
        "months": result["months"],
        "summary": result["summary"],
        "break_even_month": result["summary"]["break_even_month"],
        "payback_month": result["summary"]["payback_month"],
        "sensitivity": rows,
        "tornado": tornado,
        "verdict": result["verdict"],
        "reasons": result["reasons"],
        "charts": [],
        "report": None,
    }
    if not _finite(result):
        # huge growth over a long horizon can overflow; say so rather than print 'inf'
        raise PlanError(source, "users", "the plan grows past what a float can hold; "
                                         "lower users.growth or horizon_months")
    if out is not None:
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GoldmineError(f"{out}: cannot write the plan report there "
                                f"({e.strerror})") from None
        if charts:
            result["charts"] = [str(p) for p in draw_charts(result, out)]
        result["report"] = str(write_text(out / "plan.md", render_markdown(result)))
        write_json(out / "plan.json", result)
    return result


def _finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def money(x: float | None, cents: bool = False) -> str:
    """-$1,234; with `cents`, $0.03 (per-user and per-token figures, where cents matter)."""
    if x is None:
        return "n/a"
    digits = 2 if cents else 0
    sign = "-" if round(x, digits) < 0 else ""
    return f"{sign}${abs(x):,.{digits}f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _month(m: int | None) -> str:
    return "never" if m is None else str(m)


# ---------------------------------------------------------------------------------------------
# Report and charts
# ---------------------------------------------------------------------------------------------


def render_markdown(result: dict) -> str:
    """plan.md: the verdict and its reasons, the summary, the P&L and the sensitivity tables."""
    s, u = result["summary"], result["summary"]["unit_economics"]
    lines = [f"# {result['inputs']['name']}: {result['verdict']}", ""]
    lines += [f"- {r}" for r in result["reasons"]] + [""]
    lines += ["## Summary", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in (
        ("horizon", f"{s['horizon_months']} months"),
        ("revenue", money(s["total_revenue"])),
        ("serving cost", money(s["total_serving_cost"])),
        ("training cost", money(s["total_training_cost"])),
        ("fixed costs", money(s["total_fixed_costs"])),
        ("gross margin", _pct(s["gross_margin"])),
        ("operating profit", money(s["operating_profit"])),
        ("break-even month", _month(s["break_even_month"])),
        ("users at break-even", "n/a" if s["users_at_break_even"] is None
         else f"{s['users_at_break_even']:,.0f}"),
        ("payback month", _month(s["payback_month"])),
        ("final cash", money(s["final_cash"])),
        ("lowest cash", f"{money(s['lowest_cash'])} (month {s['lowest_cash_month']})"),
        ("revenue per user per month", money(u["revenue_per_user"], cents=True)),
        ("serving cost per user per month", money(u["serving_cost_per_user"], cents=True)),
        ("contribution per user per month", money(u["contribution_per_user"], cents=True)),
        ("revenue per 1M tokens", money(u["revenue_per_1m_tokens"], cents=True)),
        ("serving cost per 1M tokens", money(u["serving_cost_per_1m_tokens"], cents=True)),
        ("all costs per 1M tokens served", money(u["cost_per_1m_tokens_served"], cents=True)),
        ("users needed to break even", "n/a" if u["users_to_break_even"] is None
         else f"{u['users_to_break_even']:,.0f}"),
    )]
    lines += ["", "## Monthly P&L", "",
              "| month | users | revenue | serving | training | fixed | gross margin "
              "| operating profit | cash |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in result["months"]:
        lines.append(f"| {m['month']} | {m['users']:,.0f} | {money(m['revenue'])} "
                     f"| {money(m['serving_cost'])} | {money(m['training_cost'])} "
                     f"| {money(m['fixed_costs'])} | {_pct(m['gross_margin'])} "
                     f"| {money(m['operating_profit'])} | {money(m['cash'])} |")
    lines += ["", f"## Sensitivity (each input moved {SWING:.0%} either way)", "",
              "| input | change | final cash | break-even month | payback month | verdict |",
              "|---|---:|---:|---:|---:|---|"]
    for r in result["sensitivity"]:
        lines.append(f"| {r['input']} | {r['change']:+.0%} | {money(r['final_cash'])} "
                     f"| {_month(r['break_even_month'])} | {_month(r['payback_month'])} "
                     f"| {r['verdict']} |")
    lines += ["", "Inputs ranked by how far they move the final cash: "
              + ", ".join(f"{t['input']} ({money(t['spread'])})" for t in result["tornado"])
              + "."]
    if result["charts"]:
        lines += ["", "## Charts", ""] + [f"![{Path(c).stem}]({Path(c).name})"
                                          for c in result["charts"]]
    return "\n".join(lines) + "\n"


def draw_charts(result: dict, out: Path) -> list[Path]:
    """pnl.png (revenue against stacked costs), cash.png and sensitivity.png (the tornado)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    dollars = FuncFormatter(lambda x, _: _short_money(x))
    months, s = result["months"], result["summary"]
    x = [m["month"] for m in months]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    bottom = [0.0] * len(months)
    for key, label, color in (("serving_cost", "serving", "#1f4e79"),
                              ("training_cost", "training", "#8c8c8c"),
                              ("fixed_costs", "fixed", "#a9c1d9")):
        vals = [m[key] for m in months]
        ax.bar(x, vals, bottom=bottom, label=label, color=color, width=0.8)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.plot(x, [m["revenue"] for m in months], "o-", color="#c9a227", label="revenue",
            linewidth=1.6, markersize=3)
    if s["break_even_month"]:
        ax.axvline(s["break_even_month"], color="#2e7d32", linestyle="--", linewidth=1,
                   label=f"break-even (month {s['break_even_month']})")
    ax.set_xlabel("month")
    ax.set_ylabel("$ per month")
    ax.yaxis.set_major_formatter(dollars)
    ax.set_title(f"{result['inputs']['name']}: revenue and costs")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, plt, out / "pnl.png"))

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(x, [m["cash"] for m in months], "o-", color="#1f4e79", label="cash",
            linewidth=1.6, markersize=3)
    ax.axhline(0, color="black", linewidth=0.8)
    if s["payback_month"]:
        ax.axvline(s["payback_month"], color="#2e7d32", linestyle="--", linewidth=1,
                   label=f"payback (month {s['payback_month']})")
    ax.annotate(f"lowest {_short_money(s['lowest_cash'])}",
                (s["lowest_cash_month"], s["lowest_cash"]), textcoords="offset points",
                xytext=(5, -12), fontsize=8)
    ax.set_xlabel("month")
    ax.set_ylabel("cumulative cash")
    ax.yaxis.set_major_formatter(dollars)
    ax.set_title(f"cumulative cash (verdict: {result['verdict']})")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, plt, out / "cash.png"))

    tornado = list(reversed(result["tornado"]))  # largest spread on top
    base = s["final_cash"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ys = range(len(tornado))
    ax.barh(ys, [t["low"] - base for t in tornado], left=base, color="#1f4e79",
            label=f"input -{SWING:.0%}")
    ax.barh(ys, [t["high"] - base for t in tornado], left=base, color="#c9a227",
            label=f"input +{SWING:.0%}")
    ax.axvline(base, color="black", linewidth=0.8)
    ax.set_yticks(list(ys), [t["input"] for t in tornado])
    ax.set_xlabel(f"cash at month {s['horizon_months']}")
    ax.xaxis.set_major_formatter(dollars)
    ax.set_title("sensitivity: what moves the outcome most")
    ax.grid(alpha=0.3, axis="x")
    ax.legend()
    paths.append(_save(fig, plt, out / "sensitivity.png"))
    return paths


def _save(fig, plt, path: Path) -> Path:
    """Save next to the final name, then rename: a half-written PNG never has the real name."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def _short_money(x: float) -> str:
    sign, x = ("-" if x < 0 else ""), abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{sign}${x / div:.3g}{suffix}"
    return f"{sign}${x:,.0f}"
