//! `rw-readback`: a resume's read-back alone, for `scripts/bench.sh` and for sizing
//! `RESUME_READBACK_TIMEOUT_SECS`. It reads every partition of a topic from an offset to its
//! end with the worker's own read-back ([`reprocessing_worker::resume::readback::read_back`]
//! over the Kafka client the worker uses), keeping the records of one job's files as a resumed
//! worker would, and prints one JSON line: records and bytes read, records kept, seconds.
//!
//! `rw-readback --bootstrap HOST:PORT --topic T --job JOB_ID --file 0:s3://b/a.ndjson …
//! [--worker 0/8 [--all-partitions]]`

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reprocessing_worker::config::{KafkaCompression, KafkaConfig, SecurityProtocol};
use reprocessing_worker::resume::readback::{read_back, Caps};
use rw_core::resume::PartitionOffset;
use rw_core::{Broker, LineKeys, Ours, Spread};

#[derive(Parser)]
#[command(about = "Reads a topic back as a resumed worker does, and times it")]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    /// Where every partition is read from.
    #[arg(long, default_value_t = 0)]
    from: i64,
    /// The job whose records are kept.
    #[arg(long)]
    job: String,
    /// A file of the job, as POSITION:PATH (its position in files.json); every line of it is
    /// kept. Repeat for more.
    #[arg(long)]
    file: Vec<String>,
    /// Read as worker INDEX of a job of N (`--worker INDEX/N`): only the partitions that
    /// worker sends to with `KAFKA_PARTITIONS=own`, and only the lines of its files (those at
    /// positions INDEX, INDEX + N, … of the `--file`s).
    #[arg(long)]
    worker: Option<String>,
    /// With --worker: every partition, as with `KAFKA_PARTITIONS=all`.
    #[arg(long)]
    all_partitions: bool,
    /// The read-back's time cap.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (worker, workers) = match &args.worker {
        None => (0, 1),
        Some(w) => {
            let (i, n) = w.split_once('/').ok_or("--worker is INDEX/N")?;
            (i.parse::<u32>()?, n.parse::<u32>()?)
        }
    };
    let spread = if args.all_partitions { Spread::All } else { Spread::Own { worker, workers } };
    let keys = LineKeys::for_job(&args.job);
    let mut files = Vec::new();
    for f in &args.file {
        let (i, path) = f.split_once(':').ok_or("--file is POSITION:PATH")?;
        let i: usize = i.parse()?;
        if i % workers as usize == worker as usize {
            files.push((keys.file(i, path), 1));
        }
    }
    let cfg = KafkaConfig {
        bootstrap: args.bootstrap.split(',').map(str::to_owned).collect(),
        compression: KafkaCompression::Zstd,
        idempotence: reprocessing_worker::config::KafkaIdempotence::Off,
        security: SecurityProtocol::Plaintext,
        sasl: None,
        ssl_skip_verify: false,
        ssl_ca: Vec::new(),
        connect_timeout: Duration::from_secs(30),
        delivery_timeout: Duration::from_secs(300),
    };
    let broker: Arc<dyn Broker> = Arc::new(reprocessing_worker::kafka::KafkaBroker::connect(&cfg).await?);
    let n = broker.topics(std::slice::from_ref(&args.topic)).await?[0];
    let stored: Vec<PartitionOffset> = spread
        .partitions(n)
        .into_iter()
        .map(|partition| PartitionOffset { topic: args.topic.clone(), partition, offset: args.from })
        .collect();
    let caps = Caps { max_records: u64::MAX, timeout: Duration::from_secs(args.timeout_secs) };
    let found = read_back(&broker, &[(args.topic.clone(), n)], &stored, &Arc::new(Ours::new(files)), 0, caps).await?;
    println!(
        r#"{{"records":{},"bytes":{},"ours":{},"seconds":{:.3},"partitions":{},"incomplete":{}}}"#,
        found.records,
        found.bytes,
        found.ours,
        found.took.as_secs_f64(),
        found.partitions,
        found.incomplete.len()
    );
    Ok(())
}
