"""Observability shared by the services: traces (OpenTelemetry), metrics (Prometheus text), JSON logs.

``tracing`` carries W3C trace context through NATS headers and event envelopes, ``metrics`` is a
tiny hand-written Prometheus registry with an aiohttp ``/metrics``, ``logs`` formats JSON lines
with the trace id and masks configured secrets.
"""
