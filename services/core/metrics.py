"""Prometheus metrics, one registry per application (tests run many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """Consumer metrics are labelled by group and topic: a group may read several topics (the
    activity consumer reads registry, scan and identity events), each with its own lag."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "dockyard_webhook_events_received", "Events in accepted-format envelopes", registry=r
        )
        self.events_appended = Counter(
            "dockyard_webhook_events_appended", "Events durably appended to the log", registry=r
        )
        self.envelopes_rejected = Counter(
            "dockyard_webhook_envelopes_rejected", "Envelopes refused, by error code",
            ["code"], registry=r,
        )
        self.consumer_lag = Gauge(
            "dockyard_consumer_lag", "Records the group has not committed", ["group", "topic"],
            registry=r,
        )
        self.consumer_records = Counter(
            "dockyard_consumer_records", "Records handled", ["group", "topic"], registry=r
        )
        self.consumer_failures = Counter(
            "dockyard_consumer_failures", "Failed handler attempts", ["group", "topic"], registry=r
        )
        self.consumer_dead_letters = Counter(
            "dockyard_consumer_dead_letters", "Records moved to the dead-letter topic",
            ["group", "topic"], registry=r,
        )
        self.handler_seconds = Histogram(
            "dockyard_consumer_handler_seconds", "Time to handle one batch", ["group", "topic"],
            registry=r, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
