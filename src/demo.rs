//! `argus demo`: the whole chain on one laptop in about a minute.
//!
//! ```text
//!  workload (payments system) ──OTLP/gRPC──▶ argus-agent ──OTLP/gRPC──▶ argus-detector
//!     ▲                                     (mask, queue)               │ alerts   │ signed webhook
//!     └───────── "rollout restart" heals payments ◀── webhook receiver ◀┘          ▼
//!                                                       Alertmanager stand-in (+ --alertmanager URL)
//! ```
//!
//! Everything runs in this process on loopback ports chosen by the OS, with
//! a temporary data directory, on the embedded defaults of both services
//! plus the few demo settings below.
//!
//! # Time: backfill, then an accelerated clock
//!
//! The models need a few hundred points of history per series before they
//! page (`engine.warmup`). The demo gives them that history quickly rather
//! than waiting: the detector runs its **event clock**
//! (`scoring.clock: event`, documented in `argus_detector::scoring`), which
//! follows the timestamps of the data instead of the machine's clock, with
//! a one-second step. The workload starts `HISTORY + MAX_LIVE` seconds in
//! the past and
//!
//! 1. **backfills** `--history` seconds of normal traffic as fast as the
//!    agent acknowledges it (a few seconds), with real timestamps, so the
//!    detector learns exactly what it would have learnt live;
//! 2. then plays **live** at `--speed` data seconds per wall second
//!    (default 5): ten normal seconds, then the incident on `payments`
//!    (latency ×8, a quarter of charges failing, a never-seen error log
//!    line), until the remediation webhook arrives and "restarts" payments
//!    (the incident lasts at least `MIN_INCIDENT` data seconds, the time a
//!    rollout takes); then normal traffic until the alert resolves and the
//!    remediation is verified.
//!
//! Data time never passes the wall clock, so nothing is "from the future".
//! Per-signal requests are sent in order and each waits for the agent's
//! durable acknowledgement, so the agent's queue hands them to the detector
//! in order; `ingest.max_future` gives the watermark a few seconds of slack
//! for what batching reorders.
//!
//! # What it prints, writes and returns
//!
//! Progress while backfilling and learning; then the alert as the
//! Alertmanager stand-in receives it (summary, observed vs expected, band,
//! models, exemplar trace ids, the log template), the signed webhook as the
//! built-in receiver verified it, the recovery, the resolved alert, the
//! audit log's verdict on the action, and the agent's counters (nothing
//! dropped, queue drained). It writes `<out>/report.html` and
//! `<out>/incident.png` (the payments series with the detector's expected
//! value and band, the injection, the detection and the heal) and
//! `<out>/alert.json`. Exit code 0 when the incident was detected, healed by
//! the webhook and resolved; 1 otherwise.

pub mod receivers;
pub mod report;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use argus_agent::config::AgentConfig;
use argus_common::shutdown::Shutdown;
use argus_detector::config::DetectorConfig;
use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::transport::Channel;

use self::receivers::{Alert, Event, Receivers};
use self::report::{Marks, Report, SeriesView};
use self::workload::{Batch, INCIDENT_SERVICE, Phase, Workload};

/// Data seconds of normal traffic played live before the incident.
const LEAD_IN: i64 = 10;
/// The incident lasts at least this long (data seconds): a rollout takes time.
const MIN_INCIDENT: i64 = 12;
/// Heal this long (data seconds) after the webhook arrived.
const ROLLOUT: i64 = 3;
/// Without a webhook, the incident ends after this long (and the demo fails).
const MAX_INCIDENT: i64 = 90;
/// Live data seconds before the demo gives up.
const MAX_LIVE: i64 = 400;
/// Steps per request while backfilling.
const BACKFILL_CHUNK: i64 = 4;
/// `remediation.rules[0].verify_after` (wall time).
const VERIFY_AFTER: Duration = Duration::from_secs(12);

/// `argus demo` options.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Also send the alerts to this Alertmanager (e.g. http://127.0.0.1:9093).
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,
    /// Where the report goes.
    #[arg(long, default_value = "argus-demo", value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds of normal history to backfill before going live (the models
    /// need 200 points before they page).
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(i64).range(240..=20_000))]
    pub history: i64,
    /// Data seconds played per wall second once live.
    #[arg(long, default_value_t = 5.0)]
    pub speed: f64,
    /// Log the services' own logs (warnings and up) to stderr.
    #[arg(long)]
    pub verbose: bool,
}

/// Runs the demo; the exit code says whether the story ended well.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    if !(0.5..=50.0).contains(&args.speed) {
        bail!("--speed must be between 0.5 and 50 data seconds per second");
    }
    if args.verbose {
        let logging: argus_common::ops::logging::LoggingConfig =
            serde_yaml::from_str("{ filter: warn, format: text }")?;
        logging.init().context("logging")?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

/// Everything the demo learnt about the incident.
#[derive(Default)]
struct Story {
    injected: Option<(i64, Instant)>,
    alert: Option<(Alert, Instant, i64)>,
    webhook: Option<(receivers::Webhook, Instant, i64)>,
    healed: Option<i64>,
    resolved: Option<(Instant, i64)>,
    audit: Option<String>,
    other_alerts: BTreeMap<String, usize>,
    refused: Vec<String>,
}

async fn demo(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("argus-demo-").tempdir()?;
    let shutdown = Shutdown::new();
    let secret = new_secret();
    std::fs::write(dir.path().join("webhook-secret"), &secret)?;
    let mut rx = Receivers::start(&secret, shutdown.child()).await?;

    let det_cfg = DetectorConfig::from_yaml_with_env(
        &detector_yaml(dir.path(), &rx, args.alertmanager.as_deref()),
        [],
    )
    .map_err(|e| anyhow::anyhow!("demo detector config: {e}"))?;
    let detector = argus_detector::service::start(det_cfg, shutdown.child())
        .await
        .context("starting the detector")?;
    let det_grpc = detector.grpc_addr.context("detector gRPC receiver")?;
    let det_ops = detector.ops_addr;

    let agent_cfg = AgentConfig::from_yaml(&agent_yaml(dir.path(), det_grpc), [])
        .map_err(|e| anyhow::anyhow!("demo agent config: {e}"))?;
    let agent = argus_agent::agent::start(&agent_cfg, shutdown.child())
        .await
        .context("starting the agent")?;
    let agent_grpc = agent.grpc_addr.context("agent gRPC receiver")?;
    let agent_ops = agent.ops_addr;

    println!("Argus demo — a payments system (gateway → payments → ledger) watched end to end\n");
    println!("  detector   OTLP {det_grpc}   API/metrics http://{det_ops}");
    println!("  agent      OTLP {agent_grpc}   metrics http://{agent_ops}/metrics");
    println!(
        "  alerts  →  built-in Alertmanager stand-in {}{}",
        rx.alertmanager_url(),
        args.alertmanager
            .as_deref()
            .map(|u| format!(" and {u}"))
            .unwrap_or_default()
    );
    println!(
        "  webhooks → built-in verifying receiver {}",
        rx.webhook_url()
    );
    println!("  data dir   {}\n", dir.path().display());

    let sender = Sender::connect(&format!("http://{agent_grpc}")).await?;
    let http = reqwest::Client::new();
    let api = format!("http://{det_ops}");
    let now = unix_now();
    let t0 = now - args.history - MAX_LIVE - 5;
    let mut workload = Workload::new(42, t0);

    // 1. Backfill.
    let bar = ProgressBar::new(args.history as u64).with_style(
        ProgressStyle::with_template("  history  [{bar:40}] {pos}/{len} s of data  ({elapsed})")?
            .progress_chars("=> "),
    );
    let mut t = t0;
    while t < t0 + args.history {
        let end = (t + BACKFILL_CHUNK).min(t0 + args.history);
        let mut batch = Batch::default();
        for s in t..end {
            batch.extend(workload.step(s, Phase::Normal));
        }
        sender.send(batch).await?;
        bar.set_position((end - t0) as u64);
        t = end;
    }
    bar.finish();

    // 2. Learn: the backfill is scored once the live data moves the clock;
    //    play normal traffic until the payments models are past warm-up.
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("  learning {spinner} {msg}")?);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.speed));
    let learn_deadline = t + MAX_LIVE / 4;
    loop {
        tick.tick().await;
        sender.send(workload.step(t, Phase::Normal)).await?;
        t += 1;
        let learning = learning_series(&http, &api).await;
        spinner.set_message(match learning {
            Some(n) => format!("{n} payments series still learning"),
            None => "waiting for the first scored points".into(),
        });
        spinner.tick();
        if learning == Some(0) {
            break;
        }
        if t > learn_deadline {
            spinner.finish();
            bail!(
                "the payments series were still learning after {} s of data",
                t - t0
            );
        }
    }
    spinner.finish_with_message("models ready for every payments series");
    println!();

    // 3. Live: lead-in, incident, heal, recovery.
    let live_start = t;
    let mut story = Story::default();
    let audit_path = dir.path().join("remediation-audit.jsonl");
    let mut resolved_wait: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if t == live_start + LEAD_IN {
                    story.injected = Some((t, Instant::now()));
                    println!(
                        "▶ {}  injecting an incident on {INCIDENT_SERVICE}: fraud-check latency ×8, 25% of charges failing, a new error log line",
                        clock(t)
                    );
                }
                let phase = match (story.injected, story.healed) {
                    (Some((inj, _)), None) => {
                        let heal_at = match &story.webhook {
                            Some((_, _, at)) => (at + ROLLOUT).max(inj + MIN_INCIDENT),
                            None => inj + MAX_INCIDENT,
                        };
                        if t >= heal_at {
                            story.healed = Some(t);
                            println!(
                                "▶ {}  payments rolled out again (the webhook's action): latency and errors back to normal",
                                clock(t)
                            );
                            Phase::Normal
                        } else {
                            Phase::Incident
                        }
                    }
                    _ => Phase::Normal,
                };
                sender.send(workload.step(t, phase)).await?;
                t += 1;
                if story.resolved.is_some() && story.audit.is_none() {
                    story.audit = audit_verdict(&audit_path);
                }
                let finished = story.audit.is_some()
                    || resolved_wait.is_some_and(|w| w.elapsed() > VERIFY_AFTER + Duration::from_secs(10));
                if finished || t >= live_start + MAX_LIVE {
                    break;
                }
            }
            Some(ev) = rx.events.recv() => on_event(ev, t, &mut story, &mut resolved_wait),
        }
    }
    if let Some(v) = &story.audit {
        println!("✔ remediation audit: the restart is recorded as {v}");
    }

    // 4. Report.
    let series = fetch_series(&http, &api).await.unwrap_or_default();
    let agent_counts = agent_counters(&http, &format!("http://{agent_ops}/metrics")).await;
    let marks = Marks {
        injected: story.injected.map(|x| x.0),
        healed: story.healed,
        alerted: story.alert.as_ref().map(|a| a.2),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let success = story.alert.is_some() && story.webhook.is_some() && story.resolved.is_some();
    let mut summary = summary_lines(&story, &agent_counts, started);
    if let Some((inj, _)) = story.injected
        && let Some(first) = series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| p.anomalous && p.ts >= inj)
            .map(|p| p.ts)
            .min()
    {
        summary.insert(
            1,
            format!(
                "first anomalous point: data second {} of the incident (the step it began is step 0)",
                first - inj
            ),
        );
    }
    let report = Report {
        series: &series,
        marks,
        alert: story.alert.as_ref().map(|a| &a.0),
        webhook: story.webhook.as_ref().map(|w| &w.0.body),
        summary: &summary,
        success,
    };
    let written = report.write(&args.out);

    shutdown.trigger();
    let stop = async {
        let _ = agent.wait().await;
        let _ = detector.wait().await;
        rx.wait().await;
    };
    if tokio::time::timeout(Duration::from_secs(30), stop)
        .await
        .is_err()
    {
        eprintln!("warning: the services took more than 30 s to stop");
    }

    println!();
    for line in &summary {
        println!("  {line}");
    }
    match written {
        Ok(files) => {
            for f in files {
                println!("  report: {}", f.display());
            }
        }
        Err(e) => eprintln!("  report not written: {e:#}"),
    }
    println!();
    if success {
        println!("✔ detected, paged, healed and resolved");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("✘ the incident was not detected, healed and resolved (see above)");
        Ok(ExitCode::FAILURE)
    }
}

fn on_event(ev: Event, t: i64, story: &mut Story, resolved_wait: &mut Option<Instant>) {
    match ev {
        Event::Alert(a) => {
            let service = a.labels.get("service").cloned().unwrap_or_default();
            if service != INCIDENT_SERVICE {
                let n = story.other_alerts.entry(service.clone()).or_default();
                if *n == 0 && !a.is_resolved() {
                    println!(
                        "! {}  alert on {service} too: {}",
                        clock(t),
                        a.annotations.get("summary").map_or("", String::as_str)
                    );
                }
                *n += 1;
                return;
            }
            if a.is_resolved() {
                if story.resolved.is_none() && story.alert.is_some() {
                    story.resolved = Some((Instant::now(), t));
                    *resolved_wait = Some(Instant::now());
                    println!(
                        "✔ {}  alert RESOLVED: {}",
                        clock(t),
                        a.labels.get("alertname").map_or("", String::as_str)
                    );
                }
                return;
            }
            if story.alert.is_none() {
                print_alert(&a, t, story.injected);
                story.alert = Some((*a, Instant::now(), t));
            } else if let Some((prev, _, _)) = &story.alert
                && prev.labels.get("severity") != a.labels.get("severity")
            {
                println!(
                    "! {}  alert escalated to {}",
                    clock(t),
                    a.labels.get("severity").map_or("?", String::as_str)
                );
                story.alert = Some((*a, Instant::now(), t));
            }
        }
        Event::Webhook(w) => {
            if story.webhook.is_none() {
                println!(
                    "✔ {}  webhook received and its signature verified",
                    clock(t)
                );
                println!("      id       {}", w.id);
                println!("      rule     {}", w.body["rule"].as_str().unwrap_or("?"));
                println!(
                    "      action   {}",
                    w.body["action"].as_str().unwrap_or("?")
                );
                println!(
                    "      target   {}",
                    w.body["target"].as_str().unwrap_or("?")
                );
                story.webhook = Some((w, Instant::now(), t));
            }
        }
        Event::Refused(why) => {
            println!("✘ {}  webhook refused: {why}", clock(t));
            story.refused.push(why);
        }
    }
}

fn print_alert(a: &Alert, t: i64, injected: Option<(i64, Instant)>) {
    let get = |k: &str| a.annotations.get(k).map_or("", String::as_str);
    let lbl = |k: &str| a.labels.get(k).map_or("", String::as_str);
    let after = injected
        .map(|(_, at)| format!(" ({:.1} s after the injection)", at.elapsed().as_secs_f64()))
        .unwrap_or_default();
    println!(
        "🔔 {}  ALERT {} [{}]{after}",
        clock(t),
        lbl("alertname"),
        lbl("severity")
    );
    println!("      summary    {}", get("summary"));
    println!(
        "      observed   {}   expected {}   band {}",
        get("observed"),
        get("expected"),
        get("band")
    );
    println!(
        "      models     {}   score {}",
        get("models"),
        get("score")
    );
    for (i, s) in get("top_series")
        .split('\n')
        .filter(|s| !s.is_empty())
        .take(4)
        .enumerate()
    {
        println!(
            "      {}  {s}",
            if i == 0 { "series   " } else { "         " }
        );
    }
    println!("      traces     {}", get("trace_ids"));
    println!("      log        {}", get("log_templates"));
    println!("      incident   {}", get("incident_id"));
}

fn summary_lines(story: &Story, agent: &AgentCounts, started: Instant) -> Vec<String> {
    let mut out = Vec::new();
    match (&story.injected, &story.alert) {
        (Some((inj, at)), Some((_, when, step))) => out.push(format!(
            "detection: alert {:.1} s after the injection (wall), {} data seconds at the accelerated clock of which {} are the event clock's watermark lag",
            when.duration_since(*at).as_secs_f64(),
            step - inj,
            WATERMARK_LAG
        )),
        (Some(_), None) => out.push("detection: NO alert for the payments incident".into()),
        _ => out.push("detection: the incident was never injected".into()),
    }
    match &story.webhook {
        Some((w, _, _)) => out.push(format!(
            "remediation: signed webhook {} verified and acted on",
            w.id
        )),
        None => out.push("remediation: NO webhook arrived".into()),
    }
    match (&story.alert, &story.resolved) {
        (Some((_, fired, _)), Some((when, _))) => out.push(format!(
            "recovery: alert resolved {:.1} s after it fired",
            when.duration_since(*fired).as_secs_f64()
        )),
        _ => out.push("recovery: the alert did NOT resolve".into()),
    }
    if !story.other_alerts.is_empty() {
        out.push(format!("other alerts: {:?}", story.other_alerts));
    }
    out.push(format!(
        "agent: {} records received, {} sent, {} dropped",
        agent.received, agent.sent, agent.dropped
    ));
    out.push(format!("demo ran {:.0} s", started.elapsed().as_secs_f64()));
    out
}

/// `ingest.max_future` + `ingest.grace` of the demo's detector: how far
/// behind the newest data the event clock closes steps.
const WATERMARK_LAG: i64 = 5 + 1;

fn detector_yaml(dir: &Path, rx: &Receivers, user_am: Option<&str>) -> String {
    let mut urls = vec![rx.alertmanager_url()];
    urls.extend(user_am.map(str::to_owned));
    let urls = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let d = dir.display();
    format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: null
ingest: {{ max_future: 5s }}
scoring:
  step: 1s
  clock: event
  recent_points: 1440
  snapshot: {{ dir: "{d}/detector" }}
incidents: {{ window: 5s }}
alerting:
  alertmanager:
    urls: [{urls}]
    resend_interval: 2s
    retry: {{ initial_interval: 100ms, max_interval: 1s, multiplier: 2 }}
  labels: {{ cluster: demo }}
remediation:
  dry_run: false
  audit_log: "{d}/remediation-audit.jsonl"
  secret: {{ file: "{d}/webhook-secret" }}
  rules:
    - name: restart-payments
      match: ['service="payments"']
      target: [service]
      cooldown: 10m
      verify_after: {verify}s
      action:
        url: "{hook}"
        timeout: 5s
        payload:
          action: rollout-restart
          deployment: "{{{{labels.service}}}}"
          reason: "{{{{annotations.summary}}}} (incident {{{{incident.id}}}})"
          rule: "{{{{rule.name}}}}"
          target: "{{{{target}}}}"
outputs:
  dashboard_url: "http://grafana.local/d/argus-service-health?var-service={{{{service}}}}&from={{{{from_ms}}}}&to={{{{to_ms}}}}"
  runbook_url: "https://github.com/argus/argus/blob/main/docs/runbooks.md#{{{{signal}}}}"
ops: {{ listen: "127.0.0.1:0" }}
"#,
        verify = VERIFY_AFTER.as_secs(),
        hook = rx.webhook_url(),
    )
}

fn agent_yaml(dir: &Path, detector: std::net::SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: null
file: null
host: null
batch: {{ timeout: 20ms }}
queue: {{ dir: "{d}/agent-queue" }}
exporter:
  endpoint: "http://{detector}"
  concurrency: 1
ops: {{ listen: "127.0.0.1:0" }}
"#
    )
}

/// A fresh Standard Webhooks secret for this run.
fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Data time as `HH:MM:SS` (UTC).
fn clock(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The OTLP clients to the agent.
struct Sender {
    traces: TraceServiceClient<Channel>,
    logs: LogsServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
}

impl Sender {
    async fn connect(url: &str) -> Result<Sender> {
        let channel = Channel::from_shared(url.to_owned())?
            .connect()
            .await
            .with_context(|| format!("connecting to the agent at {url}"))?;
        Ok(Sender {
            traces: TraceServiceClient::new(channel.clone()),
            logs: LogsServiceClient::new(channel.clone()),
            metrics: MetricsServiceClient::new(channel),
        })
    }

    /// Sends one batch, signal by signal, each once the agent acknowledged
    /// the previous (durably queued). Retries what the agent pushes back.
    async fn send(&self, b: Batch) -> Result<()> {
        retry(|| {
            let mut c = self.traces.clone();
            let m = b.traces.clone();
            async move { c.export(m).await.map(|_| ()) }
        })
        .await?;
        retry(|| {
            let mut c = self.logs.clone();
            let m = b.logs.clone();
            async move { c.export(m).await.map(|_| ()) }
        })
        .await?;
        retry(|| {
            let mut c = self.metrics.clone();
            let m = b.metrics.clone();
            async move { c.export(m).await.map(|_| ()) }
        })
        .await
    }
}

/// Retries RESOURCE_EXHAUSTED / UNAVAILABLE (the agent's "full, retry")
/// for up to 30 s, like an OTLP exporter.
async fn retry<F, Fut>(mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wait = Duration::from_millis(20);
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(s) => bail!("the agent refused telemetry: {s}"),
        }
    }
}

/// `GET /api/v1/series?match=…`, with or without the recent points.
async fn series_api(
    http: &reqwest::Client,
    api: &str,
    selector: &str,
    points: bool,
) -> reqwest::Result<serde_json::Value> {
    http.get(format!("{api}/api/v1/series"))
        .query(&[
            ("match", selector),
            ("points", if points { "true" } else { "false" }),
        ])
        .send()
        .await?
        .json()
        .await
}

/// Payments RED series still learning (None: none scored yet).
async fn learning_series(http: &reqwest::Client, api: &str) -> Option<usize> {
    let v = series_api(http, api, "span.*{service=\"payments\"}", false)
        .await
        .ok()?;
    let list = v["series"].as_array()?;
    let scored: Vec<&serde_json::Value> = list
        .iter()
        .filter(|s| s["points_seen"].as_u64().unwrap_or(0) > 0)
        .collect();
    if scored.is_empty() {
        return None;
    }
    Some(scored.iter().filter(|s| s["learning"] != false).count())
}

/// The series the report draws, with their points.
async fn fetch_series(http: &reqwest::Client, api: &str) -> Result<Vec<SeriesView>> {
    let mut out = Vec::new();
    for (sel, title) in [
        (
            "span.latency.p99{service=\"payments\",operation=\"process charge\"}",
            "payments · process charge · latency p99 (s)",
        ),
        (
            "span.error_ratio{service=\"payments\",operation=\"process charge\"}",
            "payments · process charge · error ratio",
        ),
        (
            "log.new_error_templates{service=\"payments\"}",
            "payments · new or rare error log lines per second",
        ),
    ] {
        let v = series_api(http, api, sel, true).await?;
        if let Some(s) = v["series"].as_array().and_then(|l| l.first()) {
            out.push(SeriesView::from_api(title, s));
        }
    }
    Ok(out)
}

/// The agent's record counters, summed over labels.
#[derive(Default)]
struct AgentCounts {
    received: u64,
    sent: u64,
    dropped: u64,
}

async fn agent_counters(http: &reqwest::Client, url: &str) -> AgentCounts {
    let Ok(text) = async { http.get(url).send().await?.text().await }.await else {
        return AgentCounts::default();
    };
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    AgentCounts {
        received: sum("argus_agent_records_received_total"),
        sent: sum("argus_agent_records_sent_total"),
        dropped: sum("argus_agent_records_dropped_total"),
    }
}

/// The audit log's last verdict on an action (`verified`, `escalated`).
fn audit_verdict(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["decision"].as_str().map(str::to_owned))
        .rfind(|d| d == "verified" || d == "escalated")
}
