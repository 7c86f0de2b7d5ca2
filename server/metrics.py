"""Prometheus metrics, one registry per app (so several apps can live in one test run)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from server import gctune


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    connections: Gauge
    events: Counter
    errors: Counter
    refusals: Counter
    broadcasts: Counter
    live_sessions: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        gctune.watch()
        r.register(gctune.GC_PAUSES)
        return cls(
            registry=r,
            connections=Gauge("peerroom_connections", "Open Socket.IO connections", registry=r),
            events=Counter("peerroom_events", "Client events handled", ["event"], registry=r),
            errors=Counter("peerroom_event_errors", "Client events refused", ["code"], registry=r),
            refusals=Counter("peerroom_connect_refusals", "Refused joins", ["code"], registry=r),
            broadcasts=Counter("peerroom_broadcasts", "Room broadcasts sent", registry=r),
            live_sessions=Gauge("peerroom_live_sessions", "Live sessions", registry=r),
        )
