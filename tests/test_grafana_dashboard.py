"""docs/grafana/resilient-client.json queries only what the SDK emits: a short run of the demo's kinds
of call (a retried fault, an outage that opens the circuit, a refused call, successes) under the
OpenTelemetry SDK's in-memory reader, then every metric and label of every query is looked up in it,
under the Prometheus names the exporters give it (docs/guide/otel.md: "Prometheus names")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import resilient_client as rc
from resilient_client import errors, otel
from resilient_client.testing import FakeClock

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((ROOT / "docs" / "grafana" / "resilient-client.json").read_text())
OTEL_PAGE = (ROOT / "docs" / "guide" / "otel.md").read_text()

#: Labels a Prometheus exporter adds of its own: the histogram's bucket bound and the scope's name.
EXPORTER_LABELS = {"le", "otel_scope_name"}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "sum", "rate", "increase", "histogram_quantile", "by", "without", "avg", "max", "min", "count",
    "label_values", "irate", "topk", "on", "ignoring", "and", "or", "unless",
}  # fmt: skip


def prometheus_name(name: str, unit: str, counter: bool) -> str:
    """The OpenTelemetry -> Prometheus rule: dots (any character Prometheus refuses) become
    underscores, a unit in words is appended (``s`` -> ``_seconds``; an annotation such as
    ``{retry}`` adds nothing), and a counter ends in ``_total``."""
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    unit_word = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}.get(re.sub(r"\{[^}]*\}", "", unit), "")
    if unit_word and not base.endswith(f"_{unit_word}"):
        base += f"_{unit_word}"
    return base + "_total" if counter else base


@attrs.frozen
class Emitted:
    """One instrument as a Prometheus exporter would show it: its series names and label names."""

    otel_name: str
    series: frozenset[str]
    labels: frozenset[str]
    scope: str


def queries() -> Iterator[str]:
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            yield target["expr"]
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]
            yield variable["query"]["query"]


def metrics_and_labels(expr: str) -> tuple[set[str], dict[str, set[str]]]:
    """The metric names of a PromQL expression, and the labels each is selected or grouped by."""
    labels: dict[str, set[str]] = {}
    grouped = {g.strip() for by in re.findall(r"\bby \(([^)]*)\)", expr) for g in by.split(",")}
    for metric, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
        labels.setdefault(metric, set()).update(
            re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", matchers)
        )
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\bby \([^)]*\)", " ", expr)
    names = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if w not in PROMQL_WORDS}
    names -= {"resilient_client_vendor"}  # label_values(metric, label): the label, checked below
    for name in names:
        labels.setdefault(name, set()).update(grouped)
    if expr.startswith("label_values("):
        (metric,) = names
        labels[metric].add(expr.rsplit(",", 1)[1].strip(" )"))
    return names, labels


def answers(*responses: httpx.Response) -> httpx.MockTransport:
    pending = list(responses)
    return httpx.MockTransport(lambda request: pending.pop(0))


def demo_calls() -> None:
    """The demo's kinds of call, on a fake clock: a locked Hyper account retried to success, a USTA
    outage that opens the circuit, a call the open circuit refuses, a Medable success."""
    hyper = rc.ResilientTransport(
        "hyper",
        transport=answers(
            httpx.Response(200, json={"ResponseCode": 10}), httpx.Response(200, json={"ResponseCode": 0})
        ),
        **FakeClock().options(),
    )
    with httpx.Client(transport=hyper) as client:
        client.post("https://hyper.test/api/journal", json={"AccountNo": 7})

    usta_policy = rc.load_policy("usta")
    usta_policy = attrs.evolve(
        usta_policy,
        retry=attrs.evolve(usta_policy.retry, max_attempts=2),
        breaker=attrs.evolve(usta_policy.breaker, minimum_throughput=2),
    )
    usta = rc.ResilientTransport(
        "usta",
        transport=answers(httpx.Response(503), httpx.Response(503)),
        policy=usta_policy,
        **FakeClock().options(),
    )
    with httpx.Client(transport=usta) as client:
        with pytest.raises(errors.ServiceUnavailableError):
            client.get("https://usta.test/v1/players")
        with pytest.raises(errors.CircuitOpenError):
            client.get("https://usta.test/v1/players")

    medable = rc.ResilientTransport(
        "medable", transport=answers(httpx.Response(200, json={})), **FakeClock().options()
    )
    with httpx.Client(transport=medable) as client:
        client.get("https://medable.test/org/v2/accounts/me")


@pytest.fixture(scope="module")
def emitted() -> dict[str, Emitted]:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        demo_calls()
        data = reader.get_metrics_data()
    finally:
        otel.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()
    found: dict[str, Emitted] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = type(metric.data).__name__
                counter = kind == "Sum" and getattr(metric.data, "is_monotonic", False)
                name = prometheus_name(metric.name, metric.unit or "", counter)
                series = {name + s for s in HISTOGRAM_SERIES} if kind == "Histogram" else {name}
                labels = {
                    key.replace(".", "_")
                    for point in metric.data.data_points
                    for key in point.attributes or {}
                }
                for one in series:
                    found[one] = Emitted(metric.name, frozenset(series), frozenset(labels), scope.scope.name)
    return found


def test_the_run_emits_every_instrument_of_the_sdk(emitted: dict[str, Emitted]) -> None:
    assert {e.otel_name for e in emitted.values()} == {
        "http.client.request.duration",
        "resilient_client.retries",
        "resilient_client.rejections",
        "resilient_client.breaker.transitions",
    }
    assert {e.scope for e in emitted.values()} == {"resilient_client"}


def test_the_prometheus_names_follow_the_documented_mapping() -> None:
    assert (
        prometheus_name("http.client.request.duration", "s", counter=False)
        == "http_client_request_duration_seconds"
    )
    assert (
        prometheus_name("resilient_client.retries", "{retry}", counter=True)
        == "resilient_client_retries_total"
    )
    for name in (
        "http_client_request_duration_seconds_bucket",
        "resilient_client_retries_total",
        "resilient_client_rejections_total",
        "resilient_client_breaker_transitions_total",
    ):
        assert f"`{name}" in OTEL_PAGE, f"docs/guide/otel.md does not name {name}"


def test_every_metric_the_dashboard_queries_is_emitted(emitted: dict[str, Emitted]) -> None:
    queried = {name for expr in queries() for name in metrics_and_labels(expr)[0]}
    assert queried  # the parser found the metrics: the dashboard has queries
    assert queried <= set(emitted), f"queried but never emitted: {sorted(queried - set(emitted))}"
    # and each of the four instruments is charted somewhere
    assert {emitted[name].otel_name for name in queried} == {e.otel_name for e in emitted.values()}


def test_every_label_the_dashboard_uses_is_an_emitted_attribute(emitted: dict[str, Emitted]) -> None:
    for expr in queries():
        for metric, labels in metrics_and_labels(expr)[1].items():
            unknown = labels - emitted[metric].labels - EXPORTER_LABELS
            assert not unknown, f"{metric}: labels {sorted(unknown)} are never emitted\n{expr}"


def test_the_dashboard_filters_on_the_sdks_scope() -> None:
    for expr in queries():
        if "http_client_request_duration" in expr:
            # opentelemetry-instrumentation-httpx records the same histogram name under its own scope
            assert expr.count('otel_scope_name="resilient_client"') == expr.count(
                "http_client_request_duration"
            )


def test_the_dashboard_is_grafana_json() -> None:
    assert DASHBOARD["uid"] == "resilient-client"
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel["title"] and panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]
