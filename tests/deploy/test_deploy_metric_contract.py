"""The alert and recording rules only name series the service's processes really emit.

A rule over a metric nobody exports never fires: the DB-pool alert once watched
`keel_db_pool_*` names while the app exported `db_pool_*`.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from keel.jobs.metrics import JobMetrics  # feature: worker
from keel.observability.metrics import Metrics
from keel.realtime.metrics import RealtimeMetrics  # feature: realtime

RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules" / "keel.rules.yml"
# Series from Prometheus itself or from recording rules, not from our processes.
NOT_OURS = re.compile(r"^(up|keel:.*)$")
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "and", "or",
    "unless", "absent", "le", "job", "queue", "status", "route", "method", "function",
    "on", "ignoring", "without", "avg", "count", "bool",
}  # fmt: skip


def exported_series(*registries: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
    return names


def rule_metric_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    names: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            expression = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", str(rule["expr"]))
            for token in IDENTIFIER.findall(expression):
                if token not in PROMQL_WORDS and not NOT_OURS.match(token):
                    names.add(token)
    return names


def test_every_series_a_rule_names_is_exported() -> None:
    api = Metrics()
    # Label children must exist for their samples to be listed.
    api.requests_total.labels("GET", "/livez", "200").inc()
    api.request_duration.labels("GET", "/livez").observe(0.01)
    registries = [api.registry]
    # feature: worker
    worker = JobMetrics()
    worker.finished.labels("noop", "complete").inc()
    worker.queue_depth.labels("keel:queue").set(0)
    registries.append(worker.registry)
    # end feature: worker
    # feature: realtime
    realtime = CollectorRegistry()
    RealtimeMetrics(realtime)
    registries.append(realtime)
    # end feature: realtime
    exported = exported_series(*registries)
    missing = sorted(rule_metric_names() - exported)
    assert missing == [], f"rules name series nobody exports: {missing}"
