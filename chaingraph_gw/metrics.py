"""Prometheus metrics for one gateway process (a registry per instance, no module globals)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _LatencyHistogram(Collector):
    """A request-latency histogram cheap enough for every call (no locks: one event loop thread)."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.doc = doc
        self.buckets = buckets
        self.series: dict[tuple[str, str], list[float]] = {}  # per labels: bucket counts..., sum

    def observe(self, key: tuple[str, str], seconds: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0.0] * (len(self.buckets) + 2)
        series[bisect_left(self.buckets, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        fam = HistogramMetricFamily(self.name, self.doc, labels=["type", "path"])
        for (kind, path), series in self.series.items():
            cumulative, acc = [], 0.0
            for bound, count in zip((*self.buckets, float("inf")), series[:-1]):
                acc += count
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", acc))
            fam.add_metric([kind, path], cumulative, series[-1])
        yield fam


class GatewayMetrics:
    """Counters the wire layer updates; label children are cached because lookups cost more than incs."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("chaingraph_ws_connections", "Open WebSocket connections", registry=r)
        self.connections_total = Counter(
            "chaingraph_ws_connections_opened", "WebSocket connections accepted", registry=r
        )
        self.subscriptions = Gauge("chaingraph_subscriptions", "Active subscriptions", registry=r)
        self.messages_in = Counter("chaingraph_messages_in", "Inbound frames (PING/PONG included)", registry=r)
        self.messages_out = Counter("chaingraph_messages_out", "Outbound frames", registry=r)
        self.errors = Counter("chaingraph_errors", "Error responses by tRPC code", ["code"], registry=r)
        self.closed_slow = Counter(
            "chaingraph_ws_closed_slow_reader", "Connections closed for exceeding the outbound buffer limit",
            registry=r,
        )
        self.latency = _LatencyHistogram(
            "chaingraph_request_duration_seconds",
            "Time from request frame to response (queries, mutations, subscription setup)",
            LATENCY_BUCKETS,
        )
        r.register(self.latency)
        self._error_children: dict[str, Counter] = {}
        # Cheap per-frame counting: accumulate locally, publish on scrape.
        self.pending_in = 0
        self.pending_out = 0

    def error(self, code: str) -> None:
        child = self._error_children.get(code)
        if child is None:
            child = self._error_children[code] = self.errors.labels(code)
        child.inc()

    def observe(self, kind: str, path: str, seconds: float) -> None:
        key = (kind, path)
        if key not in self.latency.series and len(self.latency.series) > 500:
            # Unknown paths are attacker-controlled: never let label cardinality grow unbounded.
            key = (kind, "_other")
        self.latency.observe(key, seconds)

    def render(self) -> bytes:
        if self.pending_in:
            self.messages_in.inc(self.pending_in)
            self.pending_in = 0
        if self.pending_out:
            self.messages_out.inc(self.pending_out)
            self.pending_out = 0
        return generate_latest(self.registry)
