"""See a consumer, probe it, trace it: metrics, health probes, statsd and OpenTelemetry.

Every part is built on ``ConsumerHooks`` and ``Consumer.statistics()`` only, and each lives
in its own module, so importing this package pulls in nothing optional:

- ``prometheus``: ``PrometheusHooks``, metrics read from the consumer's own counters at
  scrape time (extra ``[prometheus]``);
- ``health``: ``HealthHooks`` and ``Health``: live, ready, stalled (stdlib);
- ``server``: ``serve(consumer, port=...)``, one stdlib HTTP thread for ``/metrics``,
  ``/livez`` and ``/readyz``;
- ``statsd``: ``StatsdHooks`` over a plain UDP socket (stdlib);
- ``otel``: ``OTelHooks``, one CONSUMER span per chunk (extra ``[otel]``);
- ``propagation``: ``inject_trace_context(attributes)`` for producers;
- ``logs``: ``LogContext``, a hook and logging filter that puts the queue, the message ids
  and the trace ids on the log lines of a chunk.
"""
