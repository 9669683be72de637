//! The live progress line, shown only when stderr is a terminal (never in a pod's log):
//! files done, lines/s, MB/s, errors, skipped, the ETA by bytes, and whether the rate limit
//! is what holds the worker back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;

/// Renders `progress` on stderr every 250 ms until `stop` fires.
pub(crate) async fn run(progress: Arc<Progress>, assigned_files: u32, total_bytes: u64, stop: CancellationToken) {
    let bar = ProgressBar::with_draw_target(Some(total_bytes.max(1)), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:24} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let base = progress.snapshot();
    let mut last = false;
    let mut waits = 0;
    loop {
        let s = progress.snapshot();
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let lines = s.counts.total.saturating_sub(base.counts.total) as f64 / secs;
        let bytes = s.processed_bytes.saturating_sub(base.processed_bytes) as f64 / secs;
        let eta = if bytes > 0.0 {
            let left = total_bytes.saturating_sub(s.processed_bytes) as f64 / bytes;
            format!("{}s", left.round() as u64)
        } else {
            "-".into()
        };
        bar.set_position(s.processed_bytes.min(total_bytes));
        let now_waits = progress.stats().rate_limited();
        let limited = if now_waits > waits { " | held back by the rate limit" } else { "" };
        waits = now_waits;
        bar.set_message(format!(
            "files {}/{} | {:.0} lines/s | {:.1} MB/s | errors {} | skipped {} | ETA {eta}{limited}",
            s.processed_files,
            assigned_files,
            lines,
            bytes / 1e6,
            s.counts.error,
            s.counts.skipped
        ));
        bar.tick();
        if last {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => last = true,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    bar.finish();
}
