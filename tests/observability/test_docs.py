"""The operations docs agree with the exporter: dashboard queries listed, metrics real."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

import obs_handlers
from probes import get

from queue_consumer import Consumer
from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.observability.prometheus import PrometheusHooks
from queue_consumer.observability.server import serve
from queue_consumer.testing import wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = (DOCS / "observability.md").read_text()
DASHBOARD = json.loads((DOCS / "grafana" / "queue-consumer.json").read_text())
QUERIES = [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def test_every_dashboard_query_is_listed_in_the_docs() -> None:
    section = PAGE.split("## Grafana dashboard")[1].split("## Kubernetes")[0]
    listed = set(re.findall(r"`([^`]+)`", section.replace("\\|", "|")))
    assert QUERIES and set(QUERIES) <= listed, set(QUERIES) - listed


def test_every_metric_the_docs_use_is_exported(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    queue = make_sqlite(max_attempts=1)
    queue.put_many(["1", "7"])
    metrics = PrometheusHooks(queue_stats_interval=0.1)
    consumer = Consumer(queue, obs_handlers.handle, max_workers=1, max_handlers=1, hooks=[metrics])
    with serve(consumer, port=0, metrics=metrics) as server:
        consumer.start()
        try:
            wait_until(lambda: consumer.statistics().failed == 1, timeout=10)
            wait_until(lambda: "queue_consumer_queue_messages{" in get(server.url + "/metrics")[1])
            body = get(server.url + "/metrics")[1]
        finally:
            consumer.shutdown()
    exported = set(re.findall(r"^(queue_consumer_\w+)", body, re.MULTILINE))
    used = set(re.findall(r"\bqueue_consumer_\w+", " ".join(QUERIES) + PAGE.split("## Alerts")[1]))
    assert used and used <= exported, used - exported
    table = PAGE.split("## Metrics")[1].split("### Process mode")[0]
    documented = set(re.findall(r"^\| `(queue_consumer_\w+)`", table, re.MULTILINE))
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported}
    assert documented == families, documented ^ families


def test_the_kubernetes_example_probes_and_is_scraped() -> None:
    yaml = pytest.importorskip("yaml")
    documents = list(
        yaml.safe_load_all((DOCS / "operations" / "kubernetes-observability.yaml").read_text())
    )
    (deployment,) = [d for d in documents if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    (container,) = pod["spec"]["containers"]
    probes = {
        name: container[name]["httpGet"]["path"]
        for name in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes == {
        "startupProbe": "/readyz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/livez",
    }
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["QUEUE_CONSUMER_METRICS_PORT"] == str(container["ports"][0]["containerPort"])
