//! Kafka security against Apache Kafka itself: the three-node KRaft cluster of
//! `scripts/services.sh start-kafka` serves SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512), SSL and SASL_SSL, with a CA made at start-up.
//!
//! TLS: every connection the worker makes (bootstrap and the partition leaders from the
//! metadata) is TLS to the broker itself, verified against the CA; a CA that did not sign the
//! broker's certificate is refused, and `KAFKA_SSL_SKIP_VERIFY` skips the check.
//!
//! SASL: a job logs in with each mechanism and delivers, and librdkafka logged in as the same
//! user reads every line back, byte for byte; SCRAM over TLS too. A wrong password and an
//! unknown user fail the run at once and send nothing; the password shows nowhere.
//!
//! And S3 over HTTPS, trusting the CA that `SSL_CERT_FILE` names (TLS terminated by socat in
//! front of moto).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA, and a server certificate for 127.0.0.1 signed by it (openssl).
fn pki(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rw-test-ca",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let both = [std::fs::read(dir.join("srv.pem")).unwrap(), std::fs::read(dir.join("srv.key")).unwrap()].concat();
    std::fs::write(dir.join("srv-both.pem"), both).unwrap();
    // Another CA that did not sign the server's certificate.
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-days",
        "2",
        "-subj",
        "/CN=other-ca",
    ]);
}

/// socat terminating TLS on `port` (the certificate from [`pki`] in `dir`) in front of `upstream`.
fn tls_terminator(port: u16, dir: &std::path::Path, upstream: &str) -> Child {
    Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={}",
            dir.join("srv-both.pem").display()
        ))
        .arg(format!("TCP:{upstream}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kafka_over_tls_verifies_the_broker() {
    let Some(_) = cluster("kafka_over_tls_verifies_the_broker") else { return };
    let tls = env("RW_AK_SSL_BOOTSTRAP");
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path()); // for a CA that did not sign the broker's certificate
    let ca = env("RW_AK_CA_FILE");
    let other = dir.path().join("other.pem");
    let topic = unique("tls");
    ak_create_topic(&topic, 2);
    let lines = lines(500);
    let job = login_job(&tls, &topic, &lines);

    // Plaintext against the TLS port: no broker answers; fatal within the deadline.
    let out = job.command(0, 1).env("KAFKA_CONNECT_TIMEOUT_SECS", "3").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // TLS with a CA that did not sign the broker's certificate: refused.
    let out = job
        .command(0, 1)
        .env("KAFKA_SECURITY_PROTOCOL", "SSL")
        .env("KAFKA_SSL_CA_FILE", &other)
        .env("KAFKA_CONNECT_TIMEOUT_SECS", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an untrusted certificate must be refused: {}", stderr(&out));
    assert!(ak_consume(&topic).is_empty(), "nothing sent");
    // TLS verified against the right CA: the job completes.
    let job2 = login_job(&tls, &topic, &lines);
    let out = job2.command(0, 1).env("KAFKA_SECURITY_PROTOCOL", "SSL").env("KAFKA_SSL_CA_FILE", &ca).output().unwrap();
    assert_success(&out);
    // TLS without verification (KAFKA_SSL_SKIP_VERIFY) also works, with no CA at all.
    let job3 = login_job(&tls, &topic, &lines);
    let out =
        job3.command(0, 1).env("KAFKA_SECURITY_PROTOCOL", "SSL").env("KAFKA_SSL_SKIP_VERIFY", "true").output().unwrap();
    assert_success(&out);
    // Read back over TLS by librdkafka, verifying the same CA.
    let ca_arg = format!("ssl.ca.location={ca}");
    let got = consume_with(&tls, &topic, &["-X", "security.protocol=ssl", "-X", &ca_arg]);
    let mut want = lines.clone();
    want.extend(lines.iter().cloned());
    assert_eq!(values(&got), sorted(want), "both TLS runs delivered every line");
}

/// S3 over HTTPS, trusting the CA named by SSL_CERT_FILE (as the scratch image does with
/// the bundle it ships): TLS terminated in front of moto with a test CA.
#[test]
fn s3_over_https_trusts_ssl_cert_file() {
    common::needs_services!();
    let port = 19446u16;
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let upstream = env("AWS_ENDPOINT_URL").trim_start_matches("http://").to_string();
    let socat = tls_terminator(port, dir.path(), &upstream);
    let _procs = Procs(vec![socat]);
    wait_port(port);
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"]}"#);
    let bucket = unique("tls").to_lowercase();
    let lines: Vec<String> = (0..200).map(|i| event(i, "s", "2024-01-01T00:00:00Z")).collect();
    let url = put_s3(&bucket, "f.ndjson.gz", gzip((lines.join("\n") + "\n").as_bytes()));
    job.files(&[(url, 1)]);
    let https = format!("https://127.0.0.1:{port}");
    // Without the CA the certificate is not trusted: the file cannot be opened.
    let out = job
        .command(0, 1)
        .env("AWS_ENDPOINT_URL", &https)
        .env("SSL_CERT_FILE", dir.path().join("other.pem"))
        .output()
        .unwrap();
    assert_success(&out);
    let r = row(&job.id, 0);
    assert!(
        r.get("error").is_some_and(|e| e.contains("f.ndjson.gz") && e.contains("not trusted")),
        "untrusted S3 certificate must fail the file: {r:?}"
    );
    // No retry can make the certificate trusted: the file fails at once (README, "No endless
    // retries").
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("retrying from the same byte") && !log.contains("reading the file again"),
        "an untrusted certificate was retried:\n{log}"
    );
    assert!(consume(&job.topic).is_empty());
    // With SSL_CERT_FILE naming the CA, the same job reads the file over HTTPS.
    let job2 =
        Job { id: unique("job"), topic: job.topic.clone(), extra_env: vec![], dir: tempfile::tempdir().unwrap() };
    job2.config(r#"{"connection_ids":["c"]}"#);
    job2.files(&[(format!("s3://{bucket}/f.ndjson.gz"), 1)]);
    let out = job2
        .command(0, 1)
        .env("AWS_ENDPOINT_URL", &https)
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(values(&consume(&job.topic)), sorted(lines));
}

// ---- SASL logins served by Apache Kafka -----------------------------------------------------

/// The Apache Kafka cluster's PLAINTEXT bootstrap, or None when the test is skipped: a plain
/// `cargo test` without it says so; under CI or `scripts/test.sh` it is a failure.
fn cluster(test: &str) -> Option<String> {
    if common::skip_without_services(test) {
        return None;
    }
    let vars = [
        "RW_AK_BOOTSTRAP",
        "RW_AK_SASL_BOOTSTRAP",
        "RW_AK_SSL_BOOTSTRAP",
        "RW_AK_SASL_SSL_BOOTSTRAP",
        "RW_AK_CA_FILE",
        "RW_AK_PLAIN_USER",
        "RW_AK_PLAIN_PASSWORD",
        "RW_SCRAM256_USER",
        "RW_SCRAM256_PASSWORD",
        "RW_SCRAM512_USER",
        "RW_SCRAM512_PASSWORD",
        "RW_PYTHON",
    ];
    let missing: Vec<&str> = vars.into_iter().filter(|v| std::env::var(v).is_err()).collect();
    let problem = if !missing.is_empty() {
        format!("{} not set", missing.join(", "))
    } else {
        let bootstrap = env("RW_AK_BOOTSTRAP");
        match bootstrap.split(',').find(|a| std::net::TcpStream::connect(a).is_err()) {
            Some(down) => format!("nothing listens at {down}"),
            None => return Some(bootstrap),
        }
    };
    let required = |v: &str| std::env::var(v).is_ok_and(|x| x == "true" || x == "1");
    if required("CI") || required("RW_REQUIRE_SERVICES") {
        panic!("{test}: Apache Kafka is required here, but {problem}: run scripts/services.sh start-kafka");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs Apache Kafka ({problem}); run scripts/services.sh start-kafka"
    );
    None
}

/// Creates a topic on the Apache Kafka cluster (replication factor 3).
fn ak_create_topic(topic: &str, partitions: u32) {
    let out = Command::new(env("RW_PYTHON"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka_admin.py"))
        .args(["topic", topic, &partitions.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "create topic {topic}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Reads a topic of the Apache Kafka cluster over PLAINTEXT.
fn ak_consume(topic: &str) -> Vec<Msg> {
    consume_from(&env("RW_AK_BOOTSTRAP"), topic)
}

/// A SASL user of the cluster (test-only credentials from `services.sh env`).
struct User {
    mechanism: &'static str,
    name: String,
    password: String,
}

impl User {
    fn of(mechanism: &'static str) -> User {
        let (name, password) = match mechanism {
            "PLAIN" => ("RW_AK_PLAIN_USER", "RW_AK_PLAIN_PASSWORD"),
            "SCRAM-SHA-256" => ("RW_SCRAM256_USER", "RW_SCRAM256_PASSWORD"),
            _ => ("RW_SCRAM512_USER", "RW_SCRAM512_PASSWORD"),
        };
        User { mechanism, name: env(name), password: env(password) }
    }

    /// The worker's `KAFKA_SASL`.
    fn sasl(&self) -> String {
        format!(r#"{{"mechanism":"{}","username":"{}","password":"{}"}}"#, self.mechanism, self.name, self.password)
    }

    /// librdkafka's settings for logging in as this user, `key=value`.
    fn rdkafka(&self, protocol: &str) -> Vec<String> {
        vec![
            format!("security.protocol={protocol}"),
            format!("sasl.mechanisms={}", self.mechanism),
            format!("sasl.username={}", self.name),
            format!("sasl.password={}", self.password),
        ]
    }
}

/// kcat's `-X key=value` arguments.
fn kcat_args(settings: &[String]) -> Vec<&str> {
    settings.iter().flat_map(|s| ["-X", s.as_str()]).collect()
}

/// A job of `lines` lines in one file, sent to `topic` at `bootstrap`.
fn login_job(bootstrap: &str, topic: &str, lines: &[String]) -> Job {
    let job = Job {
        topic: topic.to_owned(),
        extra_env: vec![("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.to_owned())],
        ..Job::bare()
    };
    job.config(r#"{"connection_ids":["c"]}"#);
    let p = job.write("f.ndjson", (lines.join("\n") + "\n").as_bytes());
    job.files(&[(p, 1)]);
    job
}

fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| event(i, "s", "2024-01-01T00:00:00Z")).collect()
}

/// SASL_PLAINTEXT, logged in with `mechanism`: the job completes, and librdkafka logged in as
/// the same user reads every line back byte for byte.
fn login_delivers(test: &str, mechanism: &'static str) {
    let Some(_) = cluster(test) else { return };
    let bootstrap = env("RW_AK_SASL_BOOTSTRAP");
    let user = User::of(mechanism);
    let topic = unique("sasl");
    ak_create_topic(&topic, 2);
    let lines = lines(500);
    let job = login_job(&bootstrap, &topic, &lines);
    let out = job
        .command(0, 1)
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL", user.sasl())
        .output()
        .unwrap();
    assert_success(&out);
    assert!(!stderr(&out).contains(&user.password), "{mechanism}: password in the output");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed", "{mechanism}: {r:?}");
    assert_counts(&r, 500, 0, 0);
    let got = consume_with(&bootstrap, &topic, &kcat_args(&user.rdkafka("SASL_PLAINTEXT")));
    assert_eq!(values(&got), sorted(lines), "{mechanism}: every line, byte for byte");
}

#[test]
fn plain_login_delivers_every_line() {
    login_delivers("plain_login_delivers_every_line", "PLAIN");
}

#[test]
fn scram_sha_256_login_delivers_every_line() {
    login_delivers("scram_sha_256_login_delivers_every_line", "SCRAM-SHA-256");
}

#[test]
fn scram_sha_512_login_delivers_every_line() {
    login_delivers("scram_sha_512_login_delivers_every_line", "SCRAM-SHA-512");
}

/// A login Kafka refuses (`username`/`password` for `mechanism`): exit 1 within seconds
/// (not when `KAFKA_CONNECT_TIMEOUT_SECS`, 60 here, runs out: rskafka alone would retry it
/// like an unreachable broker), the row `failed` and its error naming the mechanism and the
/// user, the password nowhere, nothing sent to the topic (which exists, so a worker let
/// through would deliver).
fn refused_login(mechanism: &'static str, username: &str, password: &str) {
    let bootstrap = env("RW_AK_SASL_BOOTSTRAP");
    let topic = unique("refused");
    ak_create_topic(&topic, 1);
    let job = login_job(&bootstrap, &topic, &lines(50));
    let sasl = format!(r#"{{"mechanism":"{mechanism}","username":"{username}","password":"{password}"}}"#);
    let start = Instant::now();
    let out = job
        .command(0, 1)
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL", sasl)
        .env("KAFKA_CONNECT_TIMEOUT_SECS", "60")
        .output()
        .unwrap();
    let took = start.elapsed();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{mechanism} {username}: {log}");
    assert!(took < Duration::from_secs(15), "{mechanism} {username}: exit 1 after {took:?}");
    // Kafka's error code for a refused login (rskafka does not pass its message on).
    assert!(log.contains("SaslAuthenticationFailed"), "{mechanism} {username}: the broker's answer shows: {log}");
    assert!(!log.contains(password), "{mechanism} {username}: password in the output");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed", "{mechanism} {username}: {r:?}");
    let fatal = log.lines().filter(|l| l.contains("fatal")).collect::<Vec<_>>().join("\n");
    let error = r.get("error").cloned().unwrap_or_default();
    for text in [&fatal, &error] {
        assert!(text.contains(mechanism) && text.contains(username), "{mechanism} {username}: {text}");
    }
    assert!(!format!("{r:?}").contains(password), "{mechanism} {username}: password in the row");
    assert_eq!(num(&r, "success_count"), 0, "{mechanism} {username}: {r:?}");
    assert!(ak_consume(&topic).is_empty(), "{mechanism} {username}: sent nothing");
}

#[test]
fn a_wrong_password_fails_at_once_and_sends_nothing() {
    if cluster("a_wrong_password_fails_at_once_and_sends_nothing").is_none() {
        return;
    }
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let user = User::of(mechanism);
        refused_login(mechanism, &user.name, "wrong-pw-Kx93Lm");
    }
}

#[test]
fn an_unknown_user_fails_at_once_and_sends_nothing() {
    if cluster("an_unknown_user_fails_at_once_and_sends_nothing").is_none() {
        return;
    }
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        refused_login(mechanism, "rw-nobody", "nobody-pw-Qe42Zc");
    }
}

/// SCRAM-SHA-512 over TLS to the SASL_SSL listener, the worker's Kafka settings given by
/// `settings` (the command, the user, the bootstrap, the CA file): the job completes, the
/// password appears nowhere, and librdkafka logged in as the same user reads every line back.
/// Returns the worker's log.
fn scram_over_tls(test: &str, settings: impl FnOnce(&mut Command, &User, &str, &str)) -> Option<String> {
    cluster(test)?;
    let bootstrap = env("RW_AK_SASL_SSL_BOOTSTRAP");
    let ca = env("RW_AK_CA_FILE");
    let user = User::of("SCRAM-SHA-512");
    let topic = unique("scram-tls");
    ak_create_topic(&topic, 2);
    let lines = lines(500);
    let job = login_job(&bootstrap, &topic, &lines);
    let mut command = job.command(0, 1);
    settings(&mut command, &user, &bootstrap, &ca);
    let out = command.output().unwrap();
    assert_success(&out);
    let log = stderr(&out);
    assert!(!log.contains(&user.password), "password in the output");
    assert_eq!(row(&job.id, 0)["status"], "completed");
    let mut read = user.rdkafka("SASL_SSL");
    read.push(format!("ssl.ca.location={ca}"));
    assert_eq!(values(&consume_with(&bootstrap, &topic, &kcat_args(&read))), sorted(lines));
    Some(log)
}

/// SASL_SSL: SCRAM-SHA-512 over TLS, verifying the CA; read back the same way.
#[test]
fn scram_over_tls_delivers_every_line() {
    scram_over_tls("scram_over_tls_delivers_every_line", |c, user, _, ca| {
        c.env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL").env("KAFKA_SSL_CA_FILE", ca).env("KAFKA_SASL", user.sasl());
    });
}

/// The bulker's Kafka environment copied as it is: only kafkabase's `BULKER_KAFKA_*` names
/// (TLS switched on by `BULKER_KAFKA_SSL`, the CA as PEM text, SCRAM over TLS), none of ours.
#[test]
fn the_bulkers_kafka_environment_works_as_it_is() {
    let log = scram_over_tls("the_bulkers_kafka_environment_works_as_it_is", |c, user, bootstrap, ca| {
        c.env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env("BULKER_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("BULKER_KAFKA_SSL", "true")
            .env("BULKER_KAFKA_SSL_CA", read_to_string(std::path::Path::new(ca)))
            .env("BULKER_KAFKA_SASL", user.sasl());
    });
    if let Some(log) = log {
        assert!(log.contains("Kafka settings read by the bulker's names"), "{log}");
    }
}
