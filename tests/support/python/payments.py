"""A small payments system on the real OpenTelemetry Python SDK, driven
step by step by the end-to-end suite (tests/e2e_payments.rs).

    payments.py OTLP_GRPC_ENDPOINT T0

Three services, one resource (and one set of SDK providers) each:
gateway -> payments -> ledger. Every request is a trace of three SERVER
spans with parent/child links; `payments` writes a log record inside its
span (so the record carries the span's trace and span ids) and records a
counter (`payments.requests`, by outcome). Everything goes over OTLP/gRPC through the SDK's
own exporters.

Time is simulated: step k is the second T0 + k (T0 in the past, so a
detector on an event clock learns minutes of history in seconds). Spans and
logs carry explicit timestamps. The metrics SDK stamps points with the
collection time, so the metric exporter is wrapped to restamp each
collection with the simulated time of the step just emitted (and the
cumulative start with T0); aggregation and encoding stay the SDK's.
Each step's collection is kept and the chunk's are sent in one OTLP request
with the chunk's spans and logs (the agent acknowledges a request once it
is durable on disk, so one request per step would make the history slow).

No histogram: the detector turns a bucketed histogram into quantile series
that sit flat on a bucket-interpolated value, and a 0.5 % move of such a
flat series scores above the trigger (found by this suite: a page before
the incident); that is the engine's to fix, not this scenario's to hide
behind a looser assertion.

Commands, one JSON object per line on stdin; each answers one JSON line on
stdout once every provider has flushed (so the receiver holds the data
before the next command is read):

    {"phase": "normal",   "from": 0,   "to": 300}
    {"phase": "incident", "from": 300, "to": 320}
    {"phase": "normal",   "from": 320, "to": 400}   # recovery

`incident`: payments' own latency x10, a third of its spans end with status
ERROR, and each of those logs "ledger write timeout after N ms" (N
varying). The first incident command prints `injection_step` (unix
seconds). Answers list the trace ids of the requests emitted (hex), so the
caller can check that an alert's exemplars are real slow traces.

Everything is flushed every CHUNK steps: a detector on an event clock
accepts data up to its `ingest.max_future` behind the newest item, and a
chunk keeps the skew between signals far below that.
"""

import dataclasses
import json
import random
import sys

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint, t0 = sys.argv[1], int(sys.argv[2])
NS = 1_000_000_000
MS = 1_000_000
REQUESTS_PER_STEP = 10
CHUNK = 10
rng = random.Random(20240601)


def resource(service):
    return Resource.create(
        {
            "service.name": service,
            "k8s.namespace.name": "shop",
            "k8s.pod.name": f"{service}-5d8f7-x2k9p",
            "k8s.deployment.name": service,
        }
    )


class RestampingExporter(MetricExporter):
    """Delegates to the OTLP exporter after moving every point to the
    simulated clock (see the module docs)."""

    def __init__(self, inner):
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.now_ns = t0 * NS
        self.pending = []

    def _points(self, data):
        points = [
            dataclasses.replace(p, start_time_unix_nano=t0 * NS, time_unix_nano=self.now_ns)
            for p in data.data_points
        ]
        return dataclasses.replace(data, data_points=points)

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        # One collection per step, sent together at the next chunk flush:
        # one request per chunk instead of one per step.
        self.pending.extend(
            dataclasses.replace(
                rm,
                scope_metrics=[
                    dataclasses.replace(
                        sm,
                        metrics=[dataclasses.replace(m, data=self._points(m.data)) for m in sm.metrics],
                    )
                    for sm in rm.scope_metrics
                ],
            )
            for rm in metrics_data.resource_metrics
        )
        return MetricExportResult.SUCCESS

    def send(self):
        """Exports the pending collections as one request. The OTLP encoder
        keeps one metric per name and scope, so the steps' points are merged
        into one metric each (points in step order)."""
        if not self.pending:
            return True
        resources = {}
        for rm in self.pending:
            _, scopes = resources.setdefault(id(rm.resource), (rm, {}))
            for sm in rm.scope_metrics:
                _, metrics = scopes.setdefault(sm.scope.name, (sm, {}))
                for m in sm.metrics:
                    prev = metrics.get(m.name)
                    if prev is not None:
                        points = list(prev.data.data_points) + list(m.data.data_points)
                        m = dataclasses.replace(prev, data=dataclasses.replace(prev.data, data_points=points))
                    metrics[m.name] = m
        batch = MetricsData(
            resource_metrics=[
                dataclasses.replace(
                    rm,
                    scope_metrics=[
                        dataclasses.replace(sm, metrics=list(metrics.values())) for sm, metrics in scopes.values()
                    ],
                )
                for rm, scopes in resources.values()
            ]
        )
        self.pending = []
        return self.inner.export(batch, timeout_millis=30_000) == MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def tracer_provider(service):
    tp = TracerProvider(resource=resource(service))
    tp.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            max_queue_size=100_000,
            schedule_delay_millis=3_600_000,
            max_export_batch_size=512,
        )
    )
    return tp


providers = {s: tracer_provider(s) for s in ("gateway", "payments", "ledger")}
tracers = {s: p.get_tracer("shop.payments") for s, p in providers.items()}

log_provider = LoggerProvider(resource=resource("payments"))
log_provider.add_log_record_processor(
    BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=endpoint, insecure=True),
        max_queue_size=100_000,
        schedule_delay_millis=3_600_000,
        max_export_batch_size=512,
    )
)
logger = log_provider.get_logger("shop.payments")

metric_exporter = RestampingExporter(OTLPMetricExporter(endpoint=endpoint, insecure=True))
reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource("payments"), metric_readers=[reader])
meter = meter_provider.get_meter("shop.payments")
requests = meter.create_counter("payments.requests", unit="{request}", description="payment requests")

spans_emitted = 0
logs_emitted = 0


def request(ts, i, incident):
    """One request: returns its trace id (hex) and payments' latency (ms)."""
    global spans_emitted, logs_emitted
    start = ts * NS + i * NS // REQUESTS_PER_STEP
    ledger_ms = 6.0 * (0.8 + 0.4 * rng.random())
    own_ms = 14.0 * (0.8 + 0.4 * rng.random())
    failed = False
    if incident:
        own_ms *= 10
        failed = rng.random() < 1 / 3
    pay_ms = ledger_ms + own_ms
    gw_ms = pay_ms + 3.0 * (0.8 + 0.4 * rng.random())

    gw = tracers["gateway"].start_span("POST /v1/payments", kind=SpanKind.SERVER, start_time=start)
    gw_ctx = trace.set_span_in_context(gw)
    pay_start = start + MS
    pay = tracers["payments"].start_span("Charge", context=gw_ctx, kind=SpanKind.SERVER, start_time=pay_start)
    pay_ctx = trace.set_span_in_context(pay)
    ledger_start = pay_start + int(own_ms * MS / 2)
    led = tracers["ledger"].start_span("WriteEntry", context=pay_ctx, kind=SpanKind.SERVER, start_time=ledger_start)
    led.end(end_time=ledger_start + int(ledger_ms * MS))
    pay_end = pay_start + int(pay_ms * MS)
    order = rng.randrange(10_000_000, 99_999_999)
    if failed:
        timeout = int(own_ms) + rng.randrange(0, 40)
        pay.set_status(Status(StatusCode.ERROR, "ledger write timeout"))
        logger.emit(
            timestamp=pay_end - MS,
            context=pay_ctx,
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body=f"ledger write timeout after {timeout} ms",
            attributes={"order.id": str(order)},
        )
    else:
        logger.emit(
            timestamp=pay_end - MS,
            context=pay_ctx,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=f"payment {order} authorised in {int(pay_ms)} ms",
        )
    logs_emitted += 1
    pay.end(end_time=pay_end)
    gw.end(end_time=start + MS + int(gw_ms * MS) + MS)
    spans_emitted += 3
    requests.add(1, {"outcome": "error" if failed else "ok"})
    return format(gw.get_span_context().trace_id, "032x"), pay_ms


def flush_chunk():
    ok = all(p.force_flush(30_000) for p in providers.values())
    ok = log_provider.force_flush(30_000) and ok
    return metric_exporter.send() and ok


def collect_metrics(step_ts):
    # The point describes the step just emitted: stamp it inside that step.
    metric_exporter.now_ns = step_ts * NS + NS // 2
    return meter_provider.force_flush(30_000)


injected = False
print(json.dumps({"ready": True, "t0": t0}), flush=True)
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    cmd = json.loads(line)
    phase, first, last = cmd["phase"], cmd["from"], cmd["to"]
    incident = phase == "incident"
    answer = {"phase": phase, "from": first, "to": last}
    if incident and not injected:
        injected = True
        answer["injection_step"] = t0 + first
    trace_ids, latencies, ok = [], [], True
    for k in range(first, last):
        for i in range(REQUESTS_PER_STEP):
            tid, ms = request(t0 + k, i, incident)
            trace_ids.append(tid)
            latencies.append(ms)
        ok = collect_metrics(t0 + k) and ok
        if (k - first) % CHUNK == CHUNK - 1:
            ok = flush_chunk() and ok
    ok = flush_chunk() and ok
    answer.update(
        ok=ok,
        trace_ids=trace_ids,
        max_latency_ms=max(latencies, default=0),
        spans_total=spans_emitted,
        logs_total=logs_emitted,
    )
    print(json.dumps(answer), flush=True)

for p in providers.values():
    p.shutdown()
log_provider.shutdown()
meter_provider.shutdown()
