"""Prometheus metrics of the real-time streams (docs/realtime.md lists them).

Counted per stream and per event, never per delivery: a fan-out to 5,000 streams costs one
histogram observation, and each stream adds what it sent to the counter when it ends.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from keel.realtime.streams import Transport

# Fan-out lag: from the event's `occurred_at` (recorded just before its transaction commits)
# to this process routing it.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Close codes worth a label; anything else counts as "other".
CLOSE_REASONS = {
    1000: "client_left",
    1001: "server_restart",
    1006: "client_gone",
    1008: "session_revoked",
    1013: "slow_consumer",
}


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.open_streams = Gauge(
            "realtime_connections_open",
            "Open event streams",
            ["transport"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.sent = Counter(
            "realtime_messages_sent",
            "Events written to clients, counted when their stream ends",
            ["transport"],
            registry=registry,
        )
        self.dropped = Counter(
            "realtime_messages_dropped",
            "Events discarded unsent: the backlog of a dropped slow consumer or revoked session",
            ["transport"],
            registry=registry,
        )
        self.ended = Counter(
            "realtime_connections_closed",
            "Event streams ended, by why",
            ["transport", "reason"],
            registry=registry,
        )
        self.refused = Counter(
            "realtime_connections_refused",
            "Event streams refused at the handshake, by why",
            ["reason"],
            registry=registry,
        )
        self.lag = Histogram(
            "realtime_fanout_lag_seconds",
            "From an event's recording (just before its commit) to its routing in this process",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._declare_series()

    def _declare_series(self) -> None:
        """Every series a dashboard or an alert reads exists at 0 before anything happens."""
        for transport in Transport:
            self.open_streams.labels(transport.value)
            self.sent.labels(transport.value)
            self.dropped.labels(transport.value)
            for reason in (*CLOSE_REASONS.values(), "other"):
                self.ended.labels(transport.value, reason)
        for reason in ("user_limit", "process_limit", "draining"):
            self.refused.labels(reason)

    def opened(self, transport: Transport) -> None:
        self.open_streams.labels(transport.value).inc()

    def closed(self, transport: Transport, code: int, sent: int, dropped: int) -> None:
        self.open_streams.labels(transport.value).dec()
        self.sent.labels(transport.value).inc(sent)
        self.dropped.labels(transport.value).inc(dropped)
        self.ended.labels(transport.value, CLOSE_REASONS.get(code, "other")).inc()

    def fanned_out(self, lag_seconds: float) -> None:
        self.lag.observe(max(lag_seconds, 0.0))

    def refusal(self, reason: str) -> None:
        self.refused.labels(reason).inc()
