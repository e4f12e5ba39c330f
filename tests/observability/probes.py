"""Talk to a running observability server the way Prometheus and kubelet do: over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; 4xx/5xx are answers, not errors."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def probe(url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url)
    return status, json.loads(body)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``url``/metrics: {(name, labels without queue/system): value}."""
    status, body = get(url + "/metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = {
                k: v for k, v in sample.labels.items() if k not in ("queue", "messaging_system")
            }
            samples[sample.name, frozenset(labels.items())] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]
