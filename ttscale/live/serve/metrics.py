"""Prometheus counters of one proxy app (``GET /metrics``)."""

from __future__ import annotations

from typing import Any

from ttscale.live.solution import Solution

__all__ = ["Metrics"]


class Metrics:
    """Counters in a registry of this app (several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ttscale_requests_total", "Client requests", ["endpoint", "status"], registry=r)
        self.seconds = Histogram("ttscale_request_seconds", "Client request latency", ["endpoint"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.samples = Counter("ttscale_upstream_samples_total", "Samples drawn upstream", registry=r)
        self.upstream_requests = Counter("ttscale_upstream_requests_total", "Upstream requests", registry=r)
        self.tokens = Counter("ttscale_upstream_tokens_total", "Upstream tokens", ["kind"], registry=r)
        self.failed = Counter("ttscale_upstream_failed_samples_total", "Samples the upstream never delivered", registry=r)
        self.inflight = Gauge("ttscale_requests_in_flight", "Client requests being answered", registry=r)

        self._prompt_tokens, self._completion_tokens = self.tokens.labels("prompt"), self.tokens.labels("completion")
        self._counts: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}
        """Children of ``requests`` and ``seconds`` by label (``labels`` takes a lock and a lookup)."""

    def answered(self, endpoint: str, status: str, seconds: float | None) -> None:
        """Count a client request answered with ``status`` after ``seconds`` (None: not timed)."""
        count = self._counts.get((endpoint, status))
        if count is None:
            count = self._counts[endpoint, status] = self.requests.labels(endpoint, status)
        count.inc()
        if seconds is not None:
            latency = self._latency.get(endpoint)
            if latency is None:
                latency = self._latency[endpoint] = self.seconds.labels(endpoint)
            latency.observe(seconds)

    def solved(self, sol: Solution) -> None:
        """Count what solving one prompt drew upstream."""
        self.samples.inc(sol.samples)
        self.upstream_requests.inc(sol.requests)
        self._prompt_tokens.inc(sol.prompt_tokens)
        self._completion_tokens.inc(sol.completion_tokens)
        if sol.failed_samples:
            self.failed.inc(sol.failed_samples)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
