//! Criterion benches of each stage and of the whole dry-run pipeline, on realistic Jitsu
//! IngestMessage lines (~1.4 KB) from the project's generator with a fixed seed.
//! Throughput is reported in bytes/s (and lines/s where the unit is a line). Each bench first
//! checks, outside the timing, that what it times does the whole work (every line split,
//! extracted, routed, batched; the pipeline run ends done with every line counted), so that a
//! stage that stopped early cannot pass for a fast one.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use reprocessing_worker::config::Tuning;
use reprocessing_worker::pipeline::{Engine, FileTask, Parts, RunEnd};
use reprocessing_worker::progress::Progress;
use reprocessing_worker::source::Sources;
use rw_core::generate::{ndjson, Shape};
use rw_core::{extract, BatchLimits, Batcher, DryRun, Filter, JobOptions, Line, LineSplitter, Router};

const SEED: u64 = 42;
const LINES: u64 = 20_000;

fn data() -> Vec<u8> {
    ndjson(SEED, &Shape::default(), LINES)
}

fn lines_of(d: &[u8]) -> Vec<&[u8]> {
    d.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()
}

fn split(c: &mut Criterion) {
    let d = data();
    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Bytes(d.len() as u64));
    let run = || {
        let mut s = LineSplitter::new(16 << 20);
        let mut n = 0usize;
        for chunk in d.chunks(8 << 20) {
            s.feed(chunk, |l| {
                n += matches!(l, Line::Text(_)) as usize;
                true
            });
        }
        s.finish(|_| true);
        n
    };
    assert_eq!(run() as u64, LINES, "every line split");
    g.bench_function("memchr_8MiB_chunks", |b| b.iter(|| black_box(run())));
    g.finish();
}

fn extract_filter(c: &mut Criterion) {
    let d = data();
    let lines = lines_of(&d);
    let filter = Filter::new(
        &rw_core::StreamSelector::List(vec!["stream-0".into(), "stream-2".into()]),
        rw_core::parse_time("2024-01-01T00:00:00Z"),
        rw_core::parse_time("2030-01-01T00:00:00Z"),
    );
    let valid = || lines.iter().filter(|l| extract(l).is_ok()).count();
    let kept = || lines.iter().filter(|l| extract(l).map(|e| filter.check(&e).is_ok()).unwrap_or(false)).count();
    assert_eq!(valid() as u64, LINES, "every line valid");
    let k = kept();
    assert!(k > 0 && (k as u64) < LINES, "the filter keeps some lines and drops others: {k}");
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Bytes(d.len() as u64));
    g.bench_function("validate_and_4_fields", |b| b.iter(valid));
    g.bench_function("validate_fields_filter", |b| b.iter(kept));
    g.finish();
}

fn routing(c: &mut Criterion) {
    let d = data();
    let lines = lines_of(&d);
    let envs: Vec<_> = lines.iter().map(|l| extract(l).unwrap()).collect();
    let mut repo = String::from("[");
    for i in 0..1000 {
        repo += &format!(
            concat!(
                r#"{{"stream":{{"id":"stream-{i}"}},"shard":{},"destinations":[{{"id":"d{i}","#,
                r#""connectionId":"c{i}","destinationType":"clickhouse"}},{{"id":"e{i}","#,
                r#""connectionId":"k{i}","destinationType":"s3"}}]}},"#
            ),
            i % 3,
            i = i,
        );
    }
    repo.pop();
    repo.push(']');
    let router = Router::from_repository("t", repo.as_bytes()).unwrap();
    let routed = || envs.iter().filter(|e| router.route(e).is_ok()).count();
    assert_eq!(routed(), envs.len(), "every line routed");
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(envs.len() as u64));
    g.bench_function("repository_1000_streams", |b| b.iter(routed));
    g.finish();
}

fn batches(c: &mut Criterion) {
    let d = data();
    let lines = lines_of(&d);
    let filter = Filter::default();
    let router = Router::fixed("t", &["conn-1".into(), "conn-2".into()]);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Bytes(d.len() as u64));
    let run = || {
        let limits = BatchLimits { records: 1000, value_bytes: 1 << 20, message_bytes: 1_000_000 };
        let mut batcher = Batcher::new(&filter, &router, limits);
        let mut n = 0;
        for (i, l) in lines.iter().enumerate() {
            batcher.line(i as u64 + 1, Line::Text(l), true, |b| n += b.records.len());
        }
        batcher.flush_all(|b| n += b.records.len());
        n
    };
    assert_eq!(run() as u64, LINES, "every line in a batch");
    g.bench_function("build_1MiB_record_batches", |b| b.iter(|| black_box(run())));
    g.finish();
}

fn whole_pipeline(c: &mut Criterion) {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("f.ndjson");
    std::fs::write(&plain, &d).unwrap();
    let gz = dir.path().join("f.ndjson.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut e, &d).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut g = c.benchmark_group("dry_run_pipeline");
    g.throughput(Throughput::Bytes(d.len() as u64));
    g.sample_size(20);
    for (name, path) in [("plain", &plain), ("gzip", &gz)] {
        let engine = |progress: Arc<Progress>| {
            let parts = Parts {
                filter: Filter::default(),
                router: Router::fixed("t", &["c".into()]),
                broker: Arc::new(DryRun),
                partitions: vec![vec![0]],
                delivery_timeout: std::time::Duration::from_secs(300),
                sources: Sources::new(None),
                progress,
                dead_letters: None,
                keys: rw_core::LineKeys::for_job("bench"),
                look_for_lost_answers: true,
                spread_seed: 0,
                sequencer: None,
            };
            Arc::new(Engine::new(parts, Tuning::default(), &JobOptions::default()))
        };
        let run = |engine: Arc<Engine>| {
            let token = tokio_util::sync::CancellationToken::new();
            let file = FileTask { index: 0, path: path.to_str().unwrap().to_owned(), first_line: 1, listed_size: 0 };
            rt.block_on(engine.run(vec![file], None, &token))
        };
        let progress = Arc::new(Progress::default());
        let end = run(engine(Arc::clone(&progress)));
        assert!(matches!(end, RunEnd::Done), "{name}: the run ended {end:?}");
        let counts = progress.snapshot().counts;
        assert_eq!((counts.total, counts.success), (LINES, LINES), "{name}: every line counted a success");
        g.bench_function(name, |b| {
            b.iter_batched(|| engine(Arc::new(Progress::default())), run, BatchSize::PerIteration)
        });
    }
    g.finish();
}

criterion_group!(benches, split, extract_filter, routing, batches, whole_pipeline);
criterion_main!(benches);
