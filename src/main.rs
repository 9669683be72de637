//! The `reprocessing-worker` binary: parse the config, start tracing, run, map to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use reprocessing_worker::cli::{Cli, Command};
use reprocessing_worker::config::{LogFormat, WorkerArgs};
use reprocessing_worker::{run, shutdown_signal, worker::report_config_failure, Config};
use rw_core::resume::WorkerStatus;
use rw_core::Chain;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The exit code after SIGTERM stopped the run early: 128 + 15, as a shell reports it.
const EXIT_CANCELLED: u8 = 143;

// musl's allocator is slow for the many small record allocations; mimalloc everywhere. In the
// static musl build it takes C's malloc too (Cargo.toml): zstd's compression contexts.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` asks for
/// them. mimalloc marks its arenas for huge pages (`madvise(MADV_HUGEPAGE)`), and on a node
/// whose THP mode honours that (`madvise` or `always`, the common defaults), each first touch
/// of a 2 MiB region makes the kernel zero it whole, and compact memory for it when none is
/// free. The worker's heap turns over hundreds of MB a second in short-lived batches: with
/// huge pages its system CPU went from 0.1 s to between 0.1 and 0.8 s per run of 210 MB, and
/// its peak RSS from 100 to 125 MiB (BENCHMARKS.md, "Huge pages"). The flag is the kernel's
/// (`PR_SET_THP_DISABLE`): it covers the arena mimalloc reserved before `main`, and every
/// later mapping; it is inherited by child processes, and the worker starts none.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// Logs how memory is set up: whose C `malloc` this is (mimalloc's in the static musl build,
/// Cargo.toml; libc's elsewhere), and whether transparent huge pages are off.
fn log_memory() {
    extern "C" {
        // mimalloc's: whether `p` lies in memory mimalloc manages.
        fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
    }
    // SAFETY: one block from C's malloc, asked about and freed at once.
    let mimalloc = unsafe {
        let p = libc::malloc(64);
        let ours = !p.is_null() && mi_is_in_heap_region(p);
        libc::free(p);
        ours
    };
    #[cfg(target_os = "linux")]
    // SAFETY: PR_GET_THP_DISABLE takes integer arguments and touches no memory of ours.
    let huge_pages = match unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } {
        1 => "off",
        _ => "allowed",
    };
    #[cfg(not(target_os = "linux"))]
    let huge_pages = "allowed";
    tracing::info!(c_malloc = if mimalloc { "mimalloc" } else { "libc" }, huge_pages, "memory");
}

fn init_tracing(format: LogFormat, aliases: &[&str]) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,rskafka=warn,aws_config=warn,aws_smithy_runtime=warn,tokio_postgres=warn")
    });
    let fmt = tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // The throttle watcher has a filter of its own: RUST_LOG cannot switch it off.
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(reprocessing_worker::kafka::throttle::layer())
        .init();
    if !aliases.is_empty() {
        tracing::info!(variables = aliases.join(","), "Kafka settings read by the bulker's names");
    }
}

async fn run_worker(args: WorkerArgs) -> ExitCode {
    log_memory();
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            let e = Chain(&e).to_string();
            tracing::error!("configuration error: {e}");
            report_config_failure(&args, &e).await;
            return ExitCode::from(2);
        }
    };
    match run(&config, shutdown_signal()).await {
        // Stopped by SIGTERM before the last file: the resume point is written, and a
        // non-zero exit keeps Kubernetes from counting this index as done.
        Ok(summary) if summary.status == WorkerStatus::Cancelled => ExitCode::from(EXIT_CANCELLED),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            tracing::error!("configuration error: {}", Chain(&e));
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("fatal: {}", Chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    // Before any thread starts: the bulker's Kafka variable names, as aliases of ours.
    let aliases = reprocessing_worker::config::apply_kafkabase_aliases();
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = |r: Result<(), reprocessing_worker::admin::AdminError>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", Chain(&e));
            ExitCode::FAILURE
        }
    };
    match cli.command {
        Some(Command::Plan(a)) => admin(runtime.block_on(reprocessing_worker::admin::run_plan(&a)).map(|_| ())),
        Some(Command::Status(a)) => admin(runtime.block_on(reprocessing_worker::admin::run_status(&a))),
        Some(Command::Schema(a)) => {
            print!("{}", reprocessing_worker::admin::schema_sql(&a));
            ExitCode::SUCCESS
        }
        Some(Command::Run(args)) => {
            init_tracing(args.log_format, &aliases);
            runtime.block_on(run_worker(args))
        }
        None => {
            init_tracing(cli.worker.log_format, &aliases);
            runtime.block_on(run_worker(cli.worker))
        }
    }
}
