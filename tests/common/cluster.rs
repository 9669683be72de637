//! A multi-broker Kafka cluster for the tests: librdkafka's mock cluster, run by
//! `scripts/mock_kafka.py` (real TCP brokers speaking the protocol, with leader moves, brokers
//! down and up, injected errors and latency). One process per test; it ends with the test.
//!
//! What it does not model: replication and leader election (a broker that is down stays the
//! leader of its partitions until a test moves them), and `max.message.bytes` (its only size
//! limit is the request frame, `--max-request-bytes`, above which it closes the connection).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::Job;

/// A running mock cluster and the pipe that steers it.
pub struct MockCluster {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub bootstrap: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/mock_kafka.py")
}

impl MockCluster {
    /// `brokers` brokers, with the default request-frame cap (about a default broker's).
    pub fn start(brokers: u32) -> MockCluster {
        Self::start_with(brokers, &[])
    }

    pub fn start_with(brokers: u32, extra: &[&str]) -> MockCluster {
        let mut child = Command::new("python3")
            .arg(script())
            .args(["--brokers", &brokers.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/mock_kafka.py");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap=")
            .unwrap_or_else(|| panic!("mock cluster did not start: {line:?}"))
            .to_owned();
        MockCluster { child, stdin, stdout, bootstrap }
    }

    /// Sends one command; returns its answer's data. Panics on an `error` answer.
    pub fn cmd(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let line = line.trim();
        match line.strip_prefix("ok") {
            Some(rest) => rest.trim().to_owned(),
            None => panic!("mock cluster: {command:?} answered {line:?}"),
        }
    }

    pub fn create_topic(&mut self, topic: &str, partitions: u32) {
        self.cmd(&format!("create-topic {topic} {partitions}"));
    }

    /// A job whose topic lives on this cluster.
    pub fn job(&mut self, partitions: u32) -> Job {
        let mut job = Job::bare();
        self.create_topic(&job.topic, partitions);
        job.extra_env.push(("KAFKA_BOOTSTRAP_SERVERS".into(), self.bootstrap.clone()));
        job
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
