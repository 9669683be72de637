//! Prometheus metrics and health endpoints, on `METRICS_ADDR` (off unless set).
//!
//! Nothing here is on the hot path. The counters the pipeline keeps already (the
//! [`Progress`] counts at the watermark, the bytes read, the files, the unsettled lines) and
//! the run's `Stats` (bumped per batch, per retry) are read when
//! Prometheus scrapes, into a recorder of this worker's own (no process-wide recorder, so
//! several workers in one process, as in the tests, keep theirs apart), and rendered in the
//! Prometheus text format by `metrics-exporter-prometheus`. Only the histograms are recorded
//! as things happen: the produce latency once per request, the rate limit's wait once per
//! batch held back. Every series carries the labels `job_id` and `worker` (not `job`:
//! Prometheus sets `job` to its scrape job's name, and would rename ours).
//!
//! - `GET /metrics`: the metrics in [`METRICS`].
//! - `GET /healthz`: 200 while the process serves and its status loop turns (at most
//!   [`STALL_AFTER`] since its last turn while it runs: not before it starts, as in a long
//!   read-back, nor after it ends); 503 otherwise. Held back by Kafka or by the rate limit,
//!   the loop still turns, so a liveness probe on it never kills a healthy worker.
//! - `GET /readyz`: 200 while the worker is connected: from the moment it reached its
//!   database and brokers until its run ends, except while its last status write failed or
//!   its last produce request got no answer from Kafka; 503 otherwise.
//!
//! With `METRICS_LINGER_SECS`, the endpoints are served that long after the run (the
//! caller's part, see `worker::run_with`), so that the next scrape sees the final values.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

use crate::progress::stats::Stats;
use crate::progress::Progress;

/// How long the status loop may go without a turn before `/healthz` says the worker is stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// The histograms' buckets, in seconds: a loopback broker answers in a millisecond or two, a
/// cluster across zones in tens, a struggling one in seconds (a request gives up at
/// `kafka::REQUEST_DEADLINE`, 30 s); a batch held back by the rate limit waits about as long
/// as its lines take at the limit.
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// As the README's table names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Every metric: its name, type, unit and help, once (the README's table and the tests read
/// it).
pub const METRICS: [(&str, Kind, &str, &str); 25] = [
    ("rw_lines_total", Kind::Counter, "lines", "lines up to the resume point by outcome: acknowledged, skipped, error"),
    ("rw_lines_sent_total", Kind::Counter, "lines", "lines handed to Kafka, each batch once, when it is first sent"),
    ("rw_bytes_read_total", Kind::Counter, "bytes", "bytes of the assigned files read, each once"),
    ("rw_bytes_assigned", Kind::Gauge, "bytes", "bytes of the files assigned to this worker, as files.json lists them"),
    ("rw_files_done", Kind::Gauge, "files", "assigned files finished (failed ones too)"),
    ("rw_files_assigned", Kind::Gauge, "files", "files assigned to this worker"),
    ("rw_files_failed", Kind::Gauge, "files", "assigned files given up"),
    ("rw_unsettled_lines", Kind::Gauge, "lines", "lines read but not yet behind the resume point"),
    ("rw_batches_in_flight", Kind::Gauge, "batches", "produce requests in flight, or waiting for the rate limit"),
    ("rw_produce_latency_seconds", Kind::Histogram, "seconds", "time from a produce request to its answer"),
    ("rw_produce_retries_total", Kind::Counter, "requests", "produce requests sent again, by Kafka error code"),
    ("rw_read_retries_total", Kind::Counter, "reads", "ranged reads resumed after a failure, by source"),
    ("rw_rate_limited_batches_total", Kind::Counter, "batches", "batches that waited for the rate limit"),
    (
        "rw_producer_renewals_total",
        Kind::Counter,
        "times",
        "new producer ids after the idempotent producer's sequences ended (renewed batches are looked for)",
    ),
    (
        "rw_rate_limit_wait_seconds",
        Kind::Histogram,
        "seconds",
        "each held-back batch's wait for the rate limit (its _sum: the time held back)",
    ),
    ("rw_read_back_records_total", Kind::Counter, "records", "records read back from Kafka on resume, anyone's"),
    ("rw_read_back_bytes_total", Kind::Counter, "bytes", "bytes of the records read back on resume (keys and values)"),
    ("rw_read_back_ours_total", Kind::Counter, "records", "records read back that can be this worker's lines"),
    ("rw_read_back_seconds", Kind::Gauge, "seconds", "how long the resume's read-back took"),
    (
        "rw_read_back_incomplete_partitions",
        Kind::Gauge,
        "partitions",
        "partitions the read-back could not read to their end (their lines after it are sent again)",
    ),
    (
        "rw_lost_answer_checks_total",
        Kind::Counter,
        "checks",
        "looks for a batch whose answer was lost, by result: found, absent, unknown",
    ),
    (
        "rw_fallbacks_total",
        Kind::Counter,
        "times",
        "falls back to sending lines again unseen, by fallback: no_offsets, off, partition, no_read_permission, \
         no_ledger (each also a warning with that fallback= field)",
    ),
    ("rw_dead_letters_written_total", Kind::Counter, "lines", "dead letters written"),
    ("rw_dead_letters_lost_total", Kind::Counter, "lines", "dead letters that could not be written"),
    ("rw_ready", Kind::Gauge, "boolean", "1 while /readyz answers 200"),
];

/// What the endpoints show: the run's progress once it has one, and the worker's state.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    progress: OnceLock<Arc<Progress>>,
    stats: Arc<Stats>,
    assigned_files: u32,
    assigned_bytes: u64,
    started: Instant,
    /// Milliseconds since `started` of the status loop's last turn; 0 before it runs.
    last_turn_ms: AtomicU64,
    connected: AtomicBool,
    /// The last status write committed (true before the first).
    database_up: AtomicBool,
}

impl Telemetry {
    pub fn new(job_id: &str, worker_index: u32, assigned_files: u32, assigned_bytes: u64) -> Arc<Self> {
        let recorder = PrometheusBuilder::new()
            .add_global_label("job_id", job_id)
            .add_global_label("worker", worker_index.to_string())
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let latency = metrics::with_local_recorder(&recorder, || {
            for (name, kind, unit, help) in METRICS {
                let help = format!("{help} ({unit})");
                match kind {
                    Kind::Counter => metrics::describe_counter!(name, help),
                    Kind::Gauge => metrics::describe_gauge!(name, help),
                    Kind::Histogram => metrics::describe_histogram!(name, help),
                }
            }
            (metrics::histogram!("rw_produce_latency_seconds"), metrics::histogram!("rw_rate_limit_wait_seconds"))
        });
        Arc::new(Telemetry {
            recorder,
            progress: OnceLock::new(),
            stats: Arc::new(Stats::new(latency.0, latency.1)),
            assigned_files,
            assigned_bytes,
            started: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            database_up: AtomicBool::new(true),
        })
    }

    /// The run's counters, recording the produce latency into this recorder.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// The run's progress, once it is built.
    pub fn set_progress(&self, progress: Arc<Progress>) {
        let _ = self.progress.set(progress);
    }

    /// Reached the database and the brokers.
    pub fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    /// The status loop turned.
    pub fn turned(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_turn_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// A status write committed (`true`) or failed.
    pub fn database(&self, up: bool) {
        self.database_up.store(up, Ordering::Relaxed);
    }

    /// The run's file loop and its status loop ended: no heartbeat is expected any more, and
    /// the worker is no longer ready.
    pub fn run_ended(&self) {
        self.last_turn_ms.store(0, Ordering::Relaxed);
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Alive: the status loop is not running, or turned within [`STALL_AFTER`].
    pub fn healthy(&self) -> bool {
        match self.last_turn_ms.load(Ordering::Relaxed) {
            0 => true,
            ms => self.started.elapsed().saturating_sub(Duration::from_millis(ms)) <= STALL_AFTER,
        }
    }

    /// Connected, its last status write committed, and its last produce request answered.
    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.database_up.load(Ordering::Relaxed) && self.stats.kafka_answers()
    }

    /// The metrics in the Prometheus text format, read from the progress now.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::gauge!("rw_files_assigned").set(self.assigned_files as f64);
            metrics::gauge!("rw_bytes_assigned").set(self.assigned_bytes as f64);
            metrics::gauge!("rw_ready").set(if self.ready() { 1.0 } else { 0.0 });
            let st = &self.stats;
            let relaxed = |a: &AtomicU64| a.load(Ordering::Relaxed);
            metrics::counter!("rw_lines_sent_total").absolute(relaxed(&st.lines_sent));
            metrics::gauge!("rw_batches_in_flight").set(relaxed(&st.batches_in_flight) as f64);
            let rb = st.read_back_report();
            metrics::counter!("rw_read_back_records_total").absolute(rb.records);
            metrics::counter!("rw_read_back_bytes_total").absolute(rb.bytes);
            metrics::counter!("rw_read_back_ours_total").absolute(rb.ours);
            metrics::gauge!("rw_read_back_seconds").set(rb.seconds);
            metrics::gauge!("rw_read_back_incomplete_partitions").set(rb.incomplete as f64);
            for (result, n) in st.lost_answer_checks() {
                metrics::counter!("rw_lost_answer_checks_total", "result" => result).absolute(n);
            }
            for (fallback, n) in st.fallbacks() {
                metrics::counter!("rw_fallbacks_total", "fallback" => fallback).absolute(n);
            }
            metrics::counter!("rw_dead_letters_written_total").absolute(st.dead_letters_written());
            metrics::counter!("rw_dead_letters_lost_total").absolute(st.dead_letters_lost());
            metrics::counter!("rw_rate_limited_batches_total").absolute(st.rate_limited());
            metrics::counter!("rw_producer_renewals_total").absolute(st.producer_renewals());
            for (code, n) in st.produce_retries() {
                metrics::counter!("rw_produce_retries_total", "code" => code).absolute(n);
            }
            for (source, n) in st.read_retries() {
                metrics::counter!("rw_read_retries_total", "source" => source).absolute(n);
            }
            if let Some(p) = self.progress.get() {
                let s = p.snapshot();
                let lines = |outcome: &'static str, n: u64| {
                    metrics::counter!("rw_lines_total", "outcome" => outcome).absolute(n);
                };
                lines("acknowledged", s.counts.success);
                lines("skipped", s.counts.skipped);
                lines("error", s.counts.error);
                metrics::counter!("rw_bytes_read_total").absolute(s.processed_bytes);
                metrics::gauge!("rw_files_done").set(s.processed_files as f64);
                metrics::gauge!("rw_files_failed").set(p.failed_files().len() as f64);
                metrics::gauge!("rw_unsettled_lines").set(p.unsettled() as f64);
            }
        });
        self.recorder.handle().render()
    }

    fn answer(&self, path: &str) -> (StatusCode, String) {
        let answer = |ok: bool, yes: &str, no: &str| match ok {
            true => (StatusCode::OK, yes.to_owned()),
            false => (StatusCode::SERVICE_UNAVAILABLE, no.to_owned()),
        };
        match path {
            "/metrics" => (StatusCode::OK, self.render()),
            "/healthz" => answer(self.healthy(), "ok\n", "stalled\n"),
            "/readyz" => answer(self.ready(), "ready\n", "not ready\n"),
            _ => (StatusCode::NOT_FOUND, "not found: /metrics, /healthz, /readyz\n".into()),
        }
    }
}

/// Serves the endpoints on `addr` until `stop`; returns the address bound (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics: accept failed");
                        continue;
                    }
                },
            };
            let t = Arc::clone(&telemetry);
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (code, body) = t.answer(req.uri().path());
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = code;
                let content_type = "text/plain; version=0.0.4; charset=utf-8";
                resp.headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
                std::future::ready(Ok::<_, std::convert::Infallible>(resp))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(async move {
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                    tracing::debug!(error = %e, "metrics: connection ended");
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rw_core::resume::Ledger;
    use rw_core::resume::Snapshot;
    use rw_core::Counts;

    /// The value of metric `name` whose labels include each of `labels` (in any order).
    fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| labels.iter().all(|kv| l.contains(kv)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn renders_the_progress_with_the_job_and_worker_labels() {
        let t = Telemetry::new("job-7", 3, 5, 4096);
        let start = Snapshot {
            counts: Counts { total: 10, success: 7, error: 1, skipped: 2 },
            processed_files: 2,
            processed_bytes: 1234,
            ..Default::default()
        };
        let text = t.render();
        let ours = [r#"job_id="job-7""#, r#"worker="3""#];
        assert_eq!(value(&text, "rw_files_assigned", &ours), Some(5.0), "{text}");
        assert!(!text.contains("rw_lines_total"), "no progress yet, no lines: {text}");
        t.set_progress(Arc::new(Progress::new(start, Ledger::default())));
        let text = t.render();
        let lines = |o: &str| value(&text, "rw_lines_total", &[ours[0], ours[1], &format!(r#"outcome="{o}""#)]);
        assert_eq!(
            (lines("acknowledged"), lines("skipped"), lines("error")),
            (Some(7.0), Some(2.0), Some(1.0)),
            "{text}"
        );
        assert_eq!(value(&text, "rw_bytes_read_total", &ours), Some(1234.0));
        assert_eq!(value(&text, "rw_files_done", &ours), Some(2.0));
        assert_eq!(value(&text, "rw_bytes_assigned", &ours), Some(4096.0));
        // Each metric is there with its type, but the retries, which have a series per code
        // or source once one happens, and the histograms, once something is recorded.
        t.stats().produce_retried("NOT_LEADER_OR_FOLLOWER");
        t.stats().read_retried("gcs");
        t.stats().produced(Duration::from_millis(7), true);
        t.stats().rate_limit_waited(Duration::from_millis(40));
        t.stats().lost_answer_checked("found");
        t.stats().fell_back(rw_core::resume::Fallback::Partition);
        t.stats().fell_back(rw_core::resume::Fallback::Partition);
        let text = t.render();
        for (name, kind, ..) in METRICS {
            assert!(text.contains(&format!("# TYPE {name} {}", kind.name())), "{name} is a {kind:?}: {text}");
        }
        let code = r#"code="NOT_LEADER_OR_FOLLOWER""#;
        assert_eq!(value(&text, "rw_produce_retries_total", &[ours[0], ours[1], code]), Some(1.0), "{text}");
        assert_eq!(value(&text, "rw_read_retries_total", &[ours[0], ours[1], r#"source="gcs""#]), Some(1.0));
        let bucket = |le: &str| value(&text, "rw_produce_latency_seconds_bucket", &[ours[0], &format!(r#"le="{le}""#)]);
        assert_eq!((bucket("0.005"), bucket("0.01")), (Some(0.0), Some(1.0)), "7 ms falls in the 10 ms bucket: {text}");
        assert_eq!(value(&text, "rw_rate_limit_wait_seconds_sum", &ours), Some(0.04));
        assert_eq!(value(&text, "rw_lost_answer_checks_total", &[ours[0], ours[1], r#"result="found""#]), Some(1.0));
        let partition = r#"fallback="partition""#;
        assert_eq!(value(&text, "rw_fallbacks_total", &[ours[0], ours[1], partition]), Some(2.0), "{text}");
    }

    /// The README's metrics table names every metric, with its unit.
    #[test]
    fn the_readme_documents_every_metric() {
        let readme = include_str!("../README.md");
        let table = readme.split("### Metrics and health").nth(1).expect("the section");
        for (name, kind, unit, _) in METRICS {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}`")) || l.starts_with(&format!("| `{name}{{")))
                .unwrap_or_else(|| panic!("{name} is not in the README"));
            let cells = format!(" | {} | {unit} | ", kind.name());
            assert!(row.contains(&cells), "{name}: the README's type and unit are not {cells}: {row}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_over_http() {
        let t = Telemetry::new("job-8", 0, 1, 10);
        let stop = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&t), stop.clone()).await.unwrap();
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 503, "not ready before the worker connected");
        t.connected();
        assert_eq!(get("/readyz").await.0, 200);
        let (code, text) = get("/metrics").await;
        assert_eq!(code, 200);
        assert_eq!(value(&text, "rw_files_assigned", &[r#"job_id="job-8""#, r#"worker="0""#]), Some(1.0), "{text}");
        assert_eq!(get("/nothing").await.0, 404);
        t.turned();
        assert!(t.healthy());
        t.run_ended();
        assert_eq!(get("/readyz").await.0, 503, "not ready once the run ended");
        stop.cancel();
    }

    #[test]
    fn a_stalled_status_loop_is_unhealthy() {
        let t = Telemetry::new("j", 0, 1, 10);
        assert!(t.healthy(), "before the loop runs");
        t.turned();
        assert!(t.healthy());
        // The last turn longer ago than the bound.
        t.last_turn_ms.store(1, Ordering::Relaxed);
        let t2 =
            Telemetry { started: Instant::now() - STALL_AFTER - Duration::from_secs(2), ..Arc::into_inner(t).unwrap() };
        assert!(!t2.healthy());
        t2.run_ended();
        assert!(t2.healthy(), "no heartbeat is expected once the loop ended");
    }
}
