//! Prometheus metrics and health endpoints, on `METRICS_ADDR` (off unless set).
//!
//! Nothing here is on the hot path: the counters the pipeline keeps already (the
//! [`Progress`] counts at the watermark, the bytes read, the files, the rate limit's waits) are
//! read when Prometheus scrapes, into a recorder of this worker's own (no process-wide
//! recorder, so several workers in one process, as in the tests, keep theirs apart), and
//! rendered in the Prometheus text format by `metrics-exporter-prometheus`. Every series
//! carries the labels `job` and `worker`.
//!
//! - `GET /metrics`: the metrics below.
//! - `GET /healthz`: 200 while the process serves and its status loop turns (at most
//!   [`STALL_AFTER`] since its last turn while it runs: not before it starts, as in a long
//!   read-back, nor after it ends); 503 otherwise. Held back by Kafka or by
//!   the rate limit, the loop still turns, so a liveness probe on it never kills a healthy
//!   worker.
//! - `GET /readyz`: 200 once the worker has reached its database and its brokers, until its
//!   run ends; 503 before and after.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;

/// How long the status loop may go without a turn before `/healthz` says the worker is stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// Every metric: its name, unit and help, once (the README's table and the tests read it).
pub const METRICS: [(&str, &str, &str); 7] = [
    ("rw_lines_total", "lines", "lines up to the resume point by outcome: acknowledged, skipped, error"),
    ("rw_bytes_read_total", "bytes", "bytes of the assigned files read, each once"),
    ("rw_files_done", "files", "assigned files finished (failed ones too)"),
    ("rw_files_assigned", "files", "files assigned to this worker"),
    ("rw_files_failed", "files", "assigned files given up"),
    ("rw_rate_limited_batches_total", "batches", "batches that waited for the rate limit"),
    ("rw_dead_letters_lost_total", "lines", "dead letters that could not be written"),
];

/// What the endpoints show: the run's progress once it has one, and the worker's state.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    progress: OnceLock<Arc<Progress>>,
    assigned_files: u32,
    started: Instant,
    /// Milliseconds since `started` of the status loop's last turn; 0 before it runs.
    last_turn_ms: AtomicU64,
    ready: AtomicBool,
}

impl Telemetry {
    pub fn new(job_id: &str, worker_index: u32, assigned_files: u32) -> Arc<Self> {
        let recorder = PrometheusBuilder::new()
            .add_global_label("job", job_id)
            .add_global_label("worker", worker_index.to_string())
            .build_recorder();
        metrics::with_local_recorder(&recorder, || {
            for (name, unit, help) in METRICS {
                metrics::describe_counter!(name, format!("{help} ({unit})"));
            }
        });
        Arc::new(Telemetry {
            recorder,
            progress: OnceLock::new(),
            assigned_files,
            started: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        })
    }

    /// The run's progress, once it is built.
    pub fn set_progress(&self, progress: Arc<Progress>) {
        let _ = self.progress.set(progress);
    }

    /// Reached the database and the brokers.
    pub fn connected(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The status loop turned.
    pub fn turned(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_turn_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// The run's file loop and its status loop ended: no heartbeat is expected any more, and
    /// the worker is no longer ready.
    pub fn run_ended(&self) {
        self.last_turn_ms.store(0, Ordering::Relaxed);
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Alive: the status loop is not running, or turned within [`STALL_AFTER`].
    pub fn healthy(&self) -> bool {
        match self.last_turn_ms.load(Ordering::Relaxed) {
            0 => true,
            ms => self.started.elapsed().saturating_sub(Duration::from_millis(ms)) <= STALL_AFTER,
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format, read from the progress now.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::gauge!("rw_files_assigned").set(self.assigned_files as f64);
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
                metrics::counter!("rw_rate_limited_batches_total").absolute(p.rate_limited.load(Ordering::Relaxed));
                metrics::counter!("rw_dead_letters_lost_total").absolute(p.lost_letters());
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
    use crate::resume::offsets::Ledger;
    use crate::resume::Snapshot;
    use crate::tracker::Counts;

    /// The value of metric `name` whose labels include each of `labels` (in any order).
    fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| labels.iter().all(|kv| l.contains(kv)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn renders_the_progress_with_the_job_and_worker_labels() {
        let t = Telemetry::new("job-7", 3, 5);
        let start = Snapshot {
            counts: Counts { total: 10, success: 7, error: 1, skipped: 2 },
            processed_files: 2,
            processed_bytes: 1234,
            ..Default::default()
        };
        let text = t.render();
        let ours = [r#"job="job-7""#, r#"worker="3""#];
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
        for (name, ..) in METRICS {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} is described: {text}");
        }
    }

    /// The README's metrics table names every metric, with its unit.
    #[test]
    fn the_readme_documents_every_metric() {
        let readme = include_str!("../README.md");
        let table = readme.split("### Metrics and health").nth(1).expect("the section");
        for (name, unit, _) in METRICS {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}")))
                .unwrap_or_else(|| panic!("{name} is not in the README"));
            assert!(row.contains(&format!(" | {unit} | ")), "{name}: the README's unit is not {unit}: {row}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_over_http() {
        let t = Telemetry::new("job-8", 0, 1);
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
        assert_eq!(value(&text, "rw_files_assigned", &[r#"job="job-8""#, r#"worker="0""#]), Some(1.0), "{text}");
        assert_eq!(get("/nothing").await.0, 404);
        t.turned();
        assert!(t.healthy());
        t.run_ended();
        assert_eq!(get("/readyz").await.0, 503, "not ready once the run ended");
        stop.cancel();
    }

    #[test]
    fn a_stalled_status_loop_is_unhealthy() {
        let t = Telemetry::new("j", 0, 1);
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
