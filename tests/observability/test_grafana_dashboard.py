"""The Grafana dashboard (grafana/dashboards/overview.json) queries only series the code exports,
and keeps the shape Grafana provisions.

A panel over a metric nobody exports stays empty without any error, in Grafana and in
Prometheus alike, so the names are checked here: every metric name in every panel's PromQL
must be among the sample names of a scrape of one of the service's processes (the API's:
`Metrics.exposition`), with prometheus-client's suffixes (`_total`, `_bucket`, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from keel.jobs.metrics import JobMetrics  # feature: worker
from keel.main import create_app
from keel.observability.metrics import Metrics
from keel.settings import Environment, Settings

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "overview.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The issue's list: the dashboard must keep a panel for each.
REQUIRED_PANELS = {
    "Request rate",
    "5xx ratio",
    "p50 latency by route",
    "p99 latency by route",
    "DB pool",
    "Redis fallbacks (rate limiter)",  # feature: ratelimit
    "Queue depth",  # feature: worker
    "Job outcomes",  # feature: worker
    "Webhook deliveries",  # feature: webhooks
}

# --- PromQL names ------------------------------------------------------------------------------

# Order matters: a string may hold anything (`"$1"`, `"5.."`), and a number may end in letters
# (durations: `5m`, `1h30m`), so both are taken before names.
TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z0-9]*)
    | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<punct>=~|!~|!=|==|>=|<=|[-+*/%^<>=@{}()\[\],:])
    """,
    re.VERBOSE,
)
# Aggregations and keywords are case-insensitive in PromQL; function names are not.
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "end", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year",
}  # fmt: skip
# Followed by a parenthesised list of label names, never of expressions.
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


def tokens(expr: str) -> Iterator[tuple[str, str]]:
    """(kind, text) of every token but whitespace; an unknown character is an error, so a
    construct this tokenizer does not know cannot hide a name."""
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot tokenize {expr[position:]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            yield kind, match.group()
        position = match.end()


def _skip_past(found: list[tuple[str, str]], index: int, closing: str) -> int:
    while index < len(found) and found[index][1] != closing:
        index += 1
    return index + 1


def _matchers(found: list[tuple[str, str]], index: int) -> tuple[int, set[str]]:
    """Skip a `{...}` selector (label names, not metrics), keeping a `__name__="x"` metric."""
    names = set()
    while index < len(found) and found[index][1] != "}":
        if found[index][1] == "__name__" and index + 2 < len(found):
            operator, (kind, value) = found[index + 1][1], found[index + 2]
            if operator == "=" and kind == "string":
                names.add(value[1:-1])
        index += 1
    return index + 1, names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables are ignored)."""
    found = list(tokens(expr))
    names: set[str] = set()
    index = 0
    while index < len(found):
        kind, text = found[index]
        following = found[index + 1][1] if index + 1 < len(found) else ""
        if text == "{":
            index, selected = _matchers(found, index)
            names |= selected
            continue
        if text == "[":  # a range or subquery: durations and Grafana variables only
            index = _skip_past(found, index, "]")
            continue
        if kind == "name":
            if text.lower() in GROUPING and following == "(":
                index = _skip_past(found, index + 1, ")")
                continue
            if text.lower() in AGGREGATIONS and following.lower() in {"by", "without"}:
                pass  # `sum by (job) (...)`: the clause comes before the parenthesis
            elif text.lower() in KEYWORDS:
                pass  # `a or (b)`: an operator, whatever follows it
            elif following == "(":
                if text.lower() not in AGGREGATIONS and text not in FUNCTIONS:
                    raise ValueError(f"unknown PromQL function {text!r} in {expr!r}")
            else:
                names.add(text)
        index += 1
    return names


def unexported(expressions: Iterable[str], exported: set[str]) -> list[str]:
    """The names the expressions query that no exposition holds, sorted."""
    queried = set().union(*(metric_names(expr) for expr in expressions))
    return sorted(queried - exported)


# --- what the code exports -------------------------------------------------------------------


def sample_names(text: str) -> dict[str, set[str]]:
    """Family name -> the sample names an exposition text holds for it."""
    families: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {sample.name for sample in family.samples}
    return families


async def _api_exposition() -> str:
    """A scrape of the API as create_app builds it (its Metrics and the limiter's counters).
    A labelled metric has no sample until a child exists: one of each is counted first."""
    # feature: worker
    # `arq_queue_depth`, sampled from Redis at a scrape, is left out: the dashboard reads the
    # worker's `keel_arq_queue_depth`.
    # end feature: worker
    app = create_app(Settings(_env_file=None, environment=Environment.TEST))
    metrics = app.state.metrics
    assert isinstance(metrics, Metrics)
    metrics.observe_request("GET", "/api/v1/users/me", 200, 0.01)
    # feature: ratelimit
    limiter_metrics = app.state.limiter.metrics
    assert limiter_metrics is not None, "the limiter must count into the app's registry"
    limiter_metrics.limited.labels("/api/v1/users/me").inc()
    # end feature: ratelimit
    return (await metrics.exposition(None)).decode()


# feature: worker
async def _worker_exposition() -> str:
    """A scrape of the worker, with a sample in each of its families."""
    metrics = JobMetrics()

    async def noop(ctx: dict[str, Any]) -> None:
        return None

    await metrics.instrument(noop)({})
    metrics.retried.labels("noop").inc()
    metrics.webhook_deliveries.labels("succeeded").inc()  # feature: webhooks
    metrics.queue_depth.labels("arq:queue").set(0)
    return (await metrics.exposition(None, "arq:queue")).decode()


# end feature: worker


@pytest.fixture
async def exported() -> set[str]:
    families: dict[str, set[str]] = {}
    texts = [await _api_exposition()]
    texts.append(await _worker_exposition())  # feature: worker
    for text in texts:
        for family, samples in sample_names(text).items():
            families.setdefault(family, set()).update(samples)
    # Every family must show its samples, or a queried name could be missed for want of a child.
    empty = sorted(name for name, samples in families.items() if not samples)
    assert empty == [], f"families without samples (count one child above): {empty}"
    return set().union(*families.values())


# --- the dashboard ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in a collapsed row."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def expressions() -> list[str]:
    return [
        target["expr"]
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def test_every_queried_metric_is_exported(exported: set[str]) -> None:
    assert unexported(expressions(), exported) == []


def test_queries_use_no_grafana_variable_but_the_rate_interval() -> None:
    """A variable could stand for a metric name, which the check above would not see (and
    `make deploy-check` could not parse the query with promtool)."""
    for expr in expressions():
        variables = {text for kind, text in tokens(expr) if kind == "variable"}
        assert variables <= {"$__rate_interval"}, expr


def test_an_invented_metric_is_reported(exported: set[str]) -> None:
    invented = 'sum(rate(keel_invented_total{route="/x"}[$__rate_interval]))'
    assert unexported([*expressions(), invented], exported) == ["keel_invented_total"]


def test_the_dashboard_queries_what_the_panels_promise() -> None:
    """The tokenizer finds names in the real expressions (an empty result would pass above)."""
    queried = set().union(*(metric_names(expr) for expr in expressions()))
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "db_pool_checked_out_connections",
        "ratelimit_fallback_decisions_total",  # feature: ratelimit
        "keel_arq_queue_depth",  # feature: worker
        "keel_arq_jobs_total",  # feature: worker
        "keel_webhook_deliveries_total",  # feature: webhooks
    } <= queried


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("http_requests_total", {"http_requests_total"}),
        ('sum by (route, le) (rate(a_bucket{route=~"/x|y", le!="+Inf"}[5m]))', {"a_bucket"}),
        (
            "sum(rate(a_total[$__rate_interval])) without (job) / on(job) group_left b",
            {"a_total", "b"},
        ),
        ("SUM BY (job) (a) > bool 0.5e3 and b offset 1h30m unless c @ start()", {"a", "b", "c"}),
        ('label_replace(a, "dst", "$1 metric_in_string", "src", "(.*)")', {"a"}),
        ('{__name__="by_name_only", job="x"}', {"by_name_only"}),
        ("max_over_time(a[10m:1m]) + Inf - NaN * 0x1F", {"a"}),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[${interval}])))", {"a_bucket"}),
        ("keel:http_requests:rate5m", {"keel:http_requests:rate5m"}),
        ("(a / b) or (0 * c) unless on (x) (d)", {"a", "b", "c", "d"}),
    ],
)
def test_metric_names_skip_functions_keywords_labels_and_durations(
    expr: str, names: set[str]
) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ["rat(a_total[5m])", "sum(a) # comment"])
def test_an_unknown_function_or_construct_is_an_error(expr: str) -> None:
    with pytest.raises(ValueError, match=r"unknown PromQL function|cannot tokenize"):
        metric_names(expr)


def test_panels_have_a_place_unique_ids_and_queries() -> None:
    found = list(panels(dashboard()))
    assert {panel["title"] for panel in found} >= REQUIRED_PANELS
    ids = [panel["id"] for panel in found]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in found:
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("x", "y", "w", "h")), panel["title"]
        assert min(grid["w"], grid["h"]) > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the 24-column grid"
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        assert all(isinstance(target["expr"], str) and target["expr"] for target in targets)
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]
    _assert_no_overlap(found)


def _assert_no_overlap(found: list[dict[str, Any]]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in found:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']} overlaps {other}"


def _datasources(node: object) -> Iterator[object]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


def test_every_query_uses_the_datasource_variable() -> None:
    """No datasource uid of one Grafana is baked in: the same JSON works in any Grafana."""
    document = dashboard()
    assert isinstance(document["schemaVersion"], int)
    assert document["uid"]
    assert document["title"]
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    used = list(_datasources(document["panels"]))
    assert used, "panels name no datasource"
    assert all(value == DATASOURCE for value in used), used


def test_provisioning_points_at_the_compose_prometheus_and_the_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "prometheus" in compose["services"]
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "keel.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
