//! An idle produce is acknowledged at once: the worker's broker connections do not wait for
//! Nagle's algorithm and the broker's delayed ACK (40 ms on Linux). rskafka alone, on the same
//! broker, is measured first for comparison.

mod common;

use std::time::{Duration, Instant};

use reprocessing_worker::config::{KafkaCompression, KafkaConfig, SecurityProtocol};
use reprocessing_worker::kafka::{to_rskafka, KafkaBroker};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rw_core::{Broker, Records, KEY_LEN};

/// Produces after an idle pause, this many times.
const ROUNDS: usize = 9;
const IDLE: Duration = Duration::from_millis(150);

/// A batch of 20 events of about 1 KiB: a request body larger than rskafka's 8 KiB write
/// buffer, so the length and the body go out as two writes, and smaller than one loopback
/// segment, so Nagle's algorithm holds the body until the length is acknowledged. (Measured
/// here: rskafka alone waits about 44 ms for bodies between 8 and 64 KiB, 1 ms below.)
fn batch(i: usize) -> Records {
    let pad = "x".repeat(1000);
    let header: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"c"[..]);
    let mut out = Records::default();
    for n in 0..20u8 {
        let key = [b'0' + n % 10; KEY_LEN];
        out.push(&key, format!(r#"{{"messageId":"idle-{i}-{n}","pad":"{pad}"}}"#).as_bytes(), &header);
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_produce_is_acknowledged_without_a_delayed_ack_stall() {
    common::needs_services!();
    let bootstrap = common::env("KAFKA_BOOTSTRAP_SERVERS");
    let topic = common::unique("idle");
    common::create_topic(&topic, 1);

    // rskafka alone: its sockets keep Nagle's algorithm.
    let client = ClientBuilder::new(vec![bootstrap.clone()]).build().await.unwrap();
    let pc = client.partition_client(&topic, 0, UnknownTopicHandling::Retry).await.unwrap();
    pc.produce(to_rskafka(&batch(0)), Compression::NoCompression).await.unwrap();
    let mut plain = Vec::new();
    for i in 0..ROUNDS {
        tokio::time::sleep(IDLE).await;
        let records = to_rskafka(&batch(i));
        let t = Instant::now();
        pc.produce(records, Compression::NoCompression).await.unwrap();
        plain.push(t.elapsed());
    }
    drop((pc, client));

    let cfg = KafkaConfig {
        bootstrap: vec![bootstrap],
        compression: KafkaCompression::None,
        idempotence: reprocessing_worker::config::KafkaIdempotence::Off,
        security: SecurityProtocol::Plaintext,
        sasl: None,
        ssl_skip_verify: false,
        ssl_ca: Vec::new(),
        connect_timeout: Duration::from_secs(10),
        delivery_timeout: Duration::from_secs(30),
    };
    let broker = KafkaBroker::connect(&cfg).await.unwrap();
    broker.topics(std::slice::from_ref(&topic)).await.unwrap();
    broker.produce(&topic, 0, &batch(0), None).await.unwrap();
    let mut ours = Vec::new();
    for i in 0..ROUNDS {
        tokio::time::sleep(IDLE).await;
        let records = batch(i);
        let t = Instant::now();
        broker.produce(&topic, 0, &records, None).await.unwrap();
        ours.push(t.elapsed());
    }
    let (plain, ours) = (median(plain), median(ours));
    println!("idle produce, median of {ROUNDS}: rskafka alone {plain:?}, the worker's broker {ours:?}");
    // The case reproduces the stall: without the worker's fix, the same produce waits for
    // the delayed ACK. (If rskafka itself stops stalling, this says so.)
    assert!(plain >= Duration::from_millis(30), "rskafka alone took {plain:?}: the case no longer shows the stall");
    assert!(ours < Duration::from_millis(10), "an idle produce took {ours:?} (rskafka alone: {plain:?})");
}
