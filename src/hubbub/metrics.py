"""This process's metrics, in the Prometheus text format (``GET /metrics``).

Each ``Metrics`` owns its registry: every hubbub process serves its own
figures (scrape each process), and several servers in one interpreter (the
tests) do not share counters.

The hot paths touch only children bound here once, at start-up, and call
``inc()`` or ``observe()`` on them. Figures the process already keeps (open
connections, online users, frames handed by the fan-out, the broker's
counts) are read when a scrape asks, by a collector, and cost nothing
between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
# No ``*_created`` series: a scraper sees a restart as a counter reset anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]
__all__ = ["CONTENT_TYPE", "Metric", "Metrics", "TransportMetrics", "counter", "gauge", "gauges"]

ERROR_CODES: Final = (
    "invalid",
    "unknown_type",
    "too_large",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
    "unavailable",
    "internal",
)
"""The documented error codes (``errors.py``), bound at start-up."""
MAX_CODES = 32  # a bound on the label values a counter by code can take
TRANSPORTS: Final = ("ws", "sse")
CLOSES: Final = {
    1011: "internal_error",
    1012: "restart",
    4401: "token_expired",
    4408: "heartbeat",
    4409: "slow_consumer",
}
"""The close codes counted, each under a reason label."""
RESUME_STATUSES: Final = ("ok", "too_far_behind", "unavailable")

LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class ByCode:
    """A counter's children by error code: the known ones bound at once."""

    __slots__ = ("_children", "_counter", "_labels")

    def __init__(self, counter: Counter, *labels: str) -> None:
        self._counter = counter
        self._labels = labels
        self._children = {code: counter.labels(*labels, code) for code in ERROR_CODES}

    def inc(self, code: str) -> None:
        child = self._children.get(code)
        if child is None:
            if len(self._children) >= MAX_CODES:
                code = "other"
            child = self._children[code] = self._counter.labels(*self._labels, code)
        child.inc()


class TransportMetrics:
    """One transport's children: ``ws``, ``sse`` (sessions) or ``rest``."""

    __slots__ = (
        "ack_latency",
        "closes",
        "rate_limited",
        "refused",
        "resumes",
        "send_failed",
        "sent",
        "sent_duplicate",
        "session_gap_fills",
        "transport",
    )

    def __init__(self, metrics: Metrics, transport: str) -> None:
        self.transport = transport
        self.sent = metrics.sends.labels(transport, "ok")
        self.sent_duplicate = metrics.sends.labels(transport, "duplicate")
        self.send_failed = ByCode(metrics.sends, transport)
        self.ack_latency = metrics.ack_latency.labels(transport)
        self.refused = ByCode(metrics.refusals, transport)
        self.rate_limited = metrics.rate_limited.labels(transport)
        self.closes = {
            code: metrics.closes.labels(transport, reason) for code, reason in CLOSES.items()
        }
        self.resumes = {status: metrics.resumes.labels(status) for status in RESUME_STATUSES}
        self.session_gap_fills = metrics.session_gap_fills.labels(transport)

    def refusal(self, code: str) -> None:
        """An error frame or an error response went out with ``code``."""
        self.refused.inc(code)
        if code == "rate_limited":
            self.rate_limited.inc()

    def closed(self, code: int) -> None:
        child = self.closes.get(code)
        if child is not None:
            child.inc()


class Readings(Collector):
    """Figures read at scrape time from the parts that keep them."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from self._read()

    def describe(self) -> list[Metric]:
        return []


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def gauges(name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class Metrics:
    """The registry of one process, and the metrics the hot paths update."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.sends = Counter(
            "hubbub_sends",
            "Messages sent, by transport and result (ok, duplicate, or the error code)",
            ["transport", "result"],
            registry=registry,
        )
        self.ack_latency = Histogram(
            "hubbub_send_ack_seconds",
            "Acked sends: from taking the send to its ack (committed), by transport",
            ["transport"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "hubbub_refusals",
            "Error frames (ws, sse) and error responses (rest), by error code",
            ["transport", "code"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "hubbub_rate_limited",
            "Refusals with rate_limited, by transport",
            ["transport"],
            registry=registry,
        )
        self.closes = Counter(
            "hubbub_connection_closes",
            "Sessions closed by the server, by transport and reason"
            " (slow_consumer 4409, heartbeat 4408, token_expired 4401, restart 1012,"
            " internal_error 1011)",
            ["transport", "reason"],
            registry=registry,
        )
        self.resumes = Counter(
            "hubbub_resume_replays",
            "Conversations answered by resume, by status",
            ["status"],
            registry=registry,
        )
        self.session_gap_fills = Counter(
            "hubbub_session_gap_fills",
            "Gaps a session read from the database for its client, by transport",
            ["transport"],
            registry=registry,
        )
        self.gap_fills = Counter(
            "hubbub_sequencer_gap_fills",
            "Gaps in a conversation's live events the sequencer looked up in the database",
            registry=registry,
        )
        self.gaps_unfilled = Counter(
            "hubbub_sequencer_gaps_unfilled",
            "Gaps the database did not fill in time (events passed on with the gap)",
            registry=registry,
        )
        self.greeted_unready = Counter(
            "hubbub_hello_unready",
            "Sessions greeted before this process received their conversations' events",
            registry=registry,
        )
        self.broker_resyncs = Counter(
            "hubbub_broker_resyncs",
            "Broker reconnections after an outage (catch-up and resync to every client)",
            registry=registry,
        )
        self.store_commit = Histogram(
            "hubbub_store_commit_seconds",
            "Store transactions: a SQLite group commit or upkeep step, or a PostgreSQL transaction",
            ["database"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.broker_publish_lag = Histogram(
            "hubbub_broker_publish_lag_seconds",
            "From an event's publication to Redis taking it (the oldest of each batch)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.broker_receive_lag = Histogram(
            "hubbub_broker_receive_lag_seconds",
            "How late other processes' lag probes arrive (every 5 s; wall clocks, so "
            "clock skew between hosts adds to it)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pushes = Counter(
            "hubbub_pushes",
            "Pushes to devices, by result: queued (composed for a device), sent (the"
            " provider took it), retried, failed (refused for good), dropped (older than"
            " HUBBUB_PUSH_MAX_AGE), gone (the provider said the device no longer exists)",
            ["result"],
            registry=registry,
        )
        self.ws = TransportMetrics(self, "ws")
        self.sse = TransportMetrics(self, "sse")
        self.rest = TransportMetrics(self, "rest")

    def watch(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Report what ``read`` yields at every scrape."""
        self.registry.register(Readings(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


DETACHED: Final = Metrics()
"""Counts for parts built without a process's metrics (unit tests); never served."""
