"""The event log port: a durable, ordered, multi-consumer log of records grouped in topics."""

from services.core.eventlog.ports import Delivered, EventLog, Record, Subscription

__all__ = ["Delivered", "EventLog", "Record", "Subscription"]
