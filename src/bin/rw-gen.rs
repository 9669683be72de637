//! `rw-gen`: writes realistic failover NDJSON (Jitsu IngestMessage lines) for benchmarks and
//! demos. `rw-gen --bytes 1000000000 --seed 1 --gzip out.ndjson.gz`

use std::io::Write;

use clap::Parser;
use rw_core::generate::{line, Rng, Shape};

#[derive(Parser)]
#[command(about = "Generates realistic failover NDJSON files")]
struct Args {
    /// Output file.
    out: std::path::PathBuf,
    /// Stop after this many uncompressed bytes.
    #[arg(long, default_value_t = 100_000_000)]
    bytes: u64,
    /// Stop after this many lines (whichever comes first).
    #[arg(long)]
    lines: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// gzip the output.
    #[arg(long)]
    gzip: bool,
    /// Comma-separated stream ids for origin.sourceId.
    #[arg(long, default_value = "stream-0,stream-1,stream-2,stream-3")]
    streams: String,
    /// First event time, Unix seconds.
    #[arg(long, default_value_t = 1_714_550_400)]
    start: i64,
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let shape = Shape { streams: a.streams.split(',').map(str::to_owned).collect(), start_unix: a.start };
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&a.out)?);
    let mut out: Box<dyn Write> = if a.gzip {
        Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::new(6)))
    } else {
        Box::new(file)
    };
    let mut rng = Rng::new(a.seed);
    let (mut written, mut n, mut buf) = (0u64, 0u64, String::with_capacity(4096));
    while written < a.bytes && a.lines.is_none_or(|l| n < l) {
        buf.clear();
        line(&mut rng, &shape, n, &mut buf);
        buf.push('\n');
        out.write_all(buf.as_bytes())?;
        written += buf.len() as u64;
        n += 1;
    }
    out.flush()?;
    drop(out);
    eprintln!("{n} lines, {written} bytes");
    Ok(())
}
