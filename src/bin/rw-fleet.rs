//! `rw-fleet`: a fleet of workers' status flushers against one PostgreSQL, in one process.
//!
//! Each of `--workers` flushers has its own connection, its own job row and its own worker
//! row, exactly as a pod's, and is fed by a synthetic progress of `--lines-per-sec` lines a
//! second over `--partitions` partitions (the read-back offsets move on every write). After
//! `--seconds` it prints one JSON object: transactions and rows written a second (from the
//! database's own statistics), the database's CPU (its processes' user and system time,
//! those that exited included), the p50/p99 write latency, and how stale the rows got (the
//! time from when a row's values were taken to when the next write of that worker
//! committed: how far behind a reader of the row can be).
//!
//! `scripts/bench.sh --only fleet` runs it at 100 and 500 workers, with the write interval
//! and without it.

use std::time::Duration;

use clap::Parser;
use reprocessing_worker::status::{PgStatus, StatusStore};
use reprocessing_worker::worker::flusher::{Flusher, Synthetic, Written};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    workers: u32,
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    #[arg(long, default_value_t = 96)]
    partitions: i32,
    #[arg(long, default_value_t = 500_000)]
    lines_per_sec: u64,
    /// STATUS_MIN_INTERVAL_MS of every flusher (0: a write at every wake-up).
    #[arg(long, default_value_t = reprocessing_worker::config::defaults::STATUS_MIN_INTERVAL_MS)]
    min_interval_ms: u64,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// The database's counters: commits, tuples written to the two tables the flushers write.
async fn db_counters(url: &str) -> (i64, i64) {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    let r = c
        .query_one(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                    (SELECT COALESCE(sum(n_tup_ins + n_tup_upd), 0)::bigint FROM pg_stat_user_tables
                     WHERE relname IN ('reprocessing_workers', 'reprocessing_worker_runs'))",
            &[],
        )
        .await
        .expect("statistics");
    (r.get(0), r.get(1))
}

/// CPU seconds of every `postgres` process, with the children the postmaster has reaped
/// (backends that exited).
fn postgres_cpu_secs() -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        if !head.ends_with("(postgres") {
            continue;
        }
        let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
        // After the comm: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
        total += f.get(11..15).map_or(0, |x| x.iter().sum());
    }
    total as f64 / tick
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let job = format!("fleet-{}-{}", a.workers, std::process::id());
    let mut stores = Vec::new();
    for i in 0..a.workers {
        let store = PgStatus::connect_to(&a.database_url, &job, i, Duration::from_secs(30)).await.expect("connect");
        let assignment = rw_core::resume::Assignment::of(&[], &[], a.workers);
        store.prepare("{}", &assignment).await.expect("prepare");
        stores.push(store);
    }
    // A backend reports its statistics at the end of a transaction at most once a second:
    // after a second, one more statement on each connection reports what start-up did.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for store in &stores {
        store.read_row().await.expect("read the row");
    }
    let (commits0, tuples0) = db_counters(&a.database_url).await;
    let cpu0 = postgres_cpu_secs();
    let started = std::time::Instant::now();
    let stop = CancellationToken::new();
    let runs = stores.iter().map(|store| {
        let stop = stop.clone();
        let progress = Synthetic::new(a.lines_per_sec, a.partitions);
        async move {
            let flusher = Flusher {
                store: store as &dyn StatusStore,
                assigned_files: 1,
                total_bytes: 0,
                min_interval: Duration::from_millis(a.min_interval_ms),
                tick: Duration::from_secs(2),
                on_turn: None,
            };
            let mut writes: Vec<Written> = Vec::new();
            flusher.run(&progress, stop, |w| writes.push(w)).await.expect("the flusher ran");
            writes
        }
    });
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(a.seconds)).await;
        stopper.cancel();
    });
    let per_worker: Vec<Vec<Written>> = futures::future::join_all(runs).await;
    let elapsed = started.elapsed().as_secs_f64();
    // Closing the connections makes their backends report their statistics and exit.
    drop(stores);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (commits1, tuples1) = db_counters(&a.database_url).await;
    let cpu = postgres_cpu_secs() - cpu0;

    let mut latency: Vec<f64> = Vec::new();
    let mut stale: Vec<f64> = Vec::new();
    let mut offsets_per_write: Vec<f64> = Vec::new();
    for writes in &per_worker {
        for w in writes {
            latency.push((w.committed - w.taken).as_secs_f64());
            offsets_per_write.push(w.offsets as f64);
        }
        for pair in writes.windows(2) {
            stale.push((pair[1].committed - pair[0].taken).as_secs_f64());
        }
    }
    latency.sort_by(f64::total_cmp);
    stale.sort_by(f64::total_cmp);
    let writes: usize = per_worker.iter().map(Vec::len).sum();
    let transactions = (commits1 - commits0) as f64;
    let tuples = (tuples1 - tuples0) as f64;
    println!(
        "{}",
        sonic_rs::json!({
            "workers": a.workers, "partitions": a.partitions, "lines_per_sec": a.lines_per_sec,
            "min_interval_ms": a.min_interval_ms, "seconds": elapsed,
            "writes": writes, "writes_per_sec_per_worker": writes as f64 / elapsed / a.workers as f64,
            "transactions_per_sec": transactions / elapsed, "rows_per_sec": tuples / elapsed,
            "rows_per_transaction": if transactions > 0.0 { tuples / transactions } else { 0.0 },
            "offsets_per_write": offsets_per_write.iter().sum::<f64>() / offsets_per_write.len().max(1) as f64,
            "db_cpu_cores": cpu / elapsed,
            "latency_p50_ms": quantile(&latency, 0.5) * 1e3, "latency_p99_ms": quantile(&latency, 0.99) * 1e3,
            "stale_p99_s": quantile(&stale, 0.99), "stale_max_s": stale.last().copied().unwrap_or(0.0),
        })
    );
}
