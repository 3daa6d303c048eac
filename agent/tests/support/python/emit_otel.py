"""Emits spans, logs (inside those spans) and metrics with the real
OpenTelemetry Python SDK and its OTLP exporters, then flushes.

    emit_otel.py grpc http://127.0.0.1:4317 RUN_ID
    emit_otel.py http http://127.0.0.1:4318 RUN_ID

Prints one JSON line: the trace and span IDs of the spans the logs were
emitted in, so the caller can check that each log record carries them.
Exits non-zero if any provider fails to flush.
"""

import json
import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

protocol, endpoint, run_id = sys.argv[1:4]

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
    metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
elif protocol == "http":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    log_exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")
    metric_exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
else:
    sys.exit(f"unknown protocol {protocol}")

resource = Resource.create({"service.name": f"checkout-{protocol}", "argus.test.run": run_id})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

tracer = tracer_provider.get_tracer("argus.e2e")
logger = logging.getLogger(f"argus.e2e.{protocol}")
logger.setLevel(logging.INFO)
logger.propagate = False
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
payments = meter_provider.get_meter("argus.e2e").create_counter(
    "payments", unit="{payment}", description="payments attempted"
)

emitted = []
for i in range(3):
    with tracer.start_as_current_span(f"pay-{i}") as span:
        logger.warning("payment %d declined for card 4111 1111 1111 1111", i)
        payments.add(1, {"outcome": "declined"})
        ctx = span.get_span_context()
        emitted.append(
            {"i": i, "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
        )

ok = tracer_provider.force_flush(30_000)
ok = logger_provider.force_flush(30_000) and ok
ok = meter_provider.force_flush(30_000) and ok
print(json.dumps(emitted), flush=True)
tracer_provider.shutdown()
logger_provider.shutdown()
meter_provider.shutdown()
sys.exit(0 if ok else 3)
