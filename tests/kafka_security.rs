//! Kafka security against real brokers.
//!
//! TLS, end to end: tansu cannot terminate TLS itself (its `--cert`/`--key` flags conflict),
//! so TLS is terminated by socat in front of a tansu whose advertised listener is the TLS
//! port: every connection the worker makes — bootstrap and the partition leaders from the
//! metadata — is TLS, with a real certificate chain.
//!
//! SCRAM, end to end: `scripts/services.sh start-auth-broker` runs a tansu built with sqlite
//! storage, whose SCRAM-SHA-256 and SCRAM-SHA-512 users were created while authentication was
//! off and which then requires a login (`--authentication`). A job logs in with each mechanism
//! and delivers, and a librdkafka consumer logged in as the same user reads every line back;
//! over TLS too (socat in front of a broker with the same users). A wrong password and an
//! unknown user fail the run and send nothing. That broker answers a failed SCRAM exchange
//! with error code 0 and lets the connection through; only the `e=` attribute of its
//! server-final message says the login failed, so these tests hold only while the worker's
//! client reads that message itself (as librdkafka does).
//!
//! PLAIN is not built into that broker (NoSharedMechanism), and the wheel's tansu answers
//! every mechanism that way: for PLAIN what is shown is that the worker negotiates SASL on
//! the wire with the mechanism it was given, and fails with a clear error and without the
//! password.

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
    if common::skip_without_services("kafka_over_tls_verifies_the_broker") {
        return;
    }
    let (tls_port, plain_port) = (19443u16, 19444u16);
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let advertised = format!("tcp://127.0.0.1:{tls_port}");
    let broker = Command::new(env("RW_TANSU_BIN"))
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{plain_port}"),
            "--advertised-listener-url",
            &advertised,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socat = tls_terminator(tls_port, dir.path(), &format!("127.0.0.1:{plain_port}"));
    let _procs = Procs(vec![broker, socat]);
    wait_port(plain_port);
    wait_port(tls_port);
    let topic = unique("tls");
    create_topic_on(&format!("127.0.0.1:{plain_port}"), &topic, 2);

    let job =
        Job { extra_env: vec![("KAFKA_BOOTSTRAP_SERVERS".into(), format!("127.0.0.1:{tls_port}"))], ..Job::new(1) };
    let job = Job { topic: topic.clone(), ..job };
    job.config(r#"{"connection_ids":["c"]}"#);
    let lines: Vec<String> = (0..500).map(|i| event(i, "s", "2024-01-01T00:00:00Z")).collect();
    let p = job.write("f.ndjson", (lines.join("\n") + "\n").as_bytes());
    job.files(&[(p, 1)]);
    let ca = dir.path().join("ca.pem");
    let other = dir.path().join("other.pem");

    // Plaintext against the TLS port: no broker answers; fatal within the deadline.
    let out = job.command(0, 1).env("KAFKA_CONNECT_TIMEOUT_SECS", "3").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // TLS with a CA that did not sign the broker's certificate: rejected.
    let out = job
        .command(0, 1)
        .env("KAFKA_SECURITY_PROTOCOL", "SSL")
        .env("KAFKA_SSL_CA_FILE", &other)
        .env("KAFKA_CONNECT_TIMEOUT_SECS", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an untrusted certificate must be rejected: {}", stderr(&out));
    // TLS verified against the right CA: the job completes.
    let job2 = Job {
        id: unique("job"),
        extra_env: job.extra_env.clone(),
        topic: topic.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    job2.config(r#"{"connection_ids":["c"]}"#);
    let p = job2.write("f.ndjson", (lines.join("\n") + "\n").as_bytes());
    job2.files(&[(p, 1)]);
    let out = job2.command(0, 1).env("KAFKA_SECURITY_PROTOCOL", "SSL").env("KAFKA_SSL_CA_FILE", &ca).output().unwrap();
    assert_success(&out);
    // TLS without verification (KAFKA_SSL_SKIP_VERIFY) also works, with no CA at all.
    let job3 = Job {
        id: unique("job"),
        extra_env: job.extra_env.clone(),
        topic: topic.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    job3.config(r#"{"connection_ids":["c"]}"#);
    let p = job3.write("f.ndjson", (lines.join("\n") + "\n").as_bytes());
    job3.files(&[(p, 1)]);
    let out =
        job3.command(0, 1).env("KAFKA_SECURITY_PROTOCOL", "SSL").env("KAFKA_SSL_SKIP_VERIFY", "true").output().unwrap();
    assert_success(&out);
    let ca_arg = format!("ssl.ca.location={}", ca.display());
    let got = consume_with(&format!("127.0.0.1:{tls_port}"), &topic, &["-X", "security.protocol=ssl", "-X", &ca_arg]);
    let mut want = lines.clone();
    want.extend(lines.iter().cloned());
    assert_eq!(values(&got), sorted(want), "both TLS runs delivered every line");
}

#[test]
fn sasl_is_negotiated_on_the_wire_and_the_password_never_shows() {
    if common::skip_without_services("sasl_is_negotiated_on_the_wire_and_the_password_never_shows") {
        return;
    }
    let port = 19445u16;
    let broker = Command::new(env("RW_TANSU_BIN"))
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--authentication",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _procs = Procs(vec![broker]);
    wait_port(port);
    for mech in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let job =
            Job { extra_env: vec![("KAFKA_BOOTSTRAP_SERVERS".into(), format!("127.0.0.1:{port}"))], ..Job::new(1) };
        job.config(r#"{"connection_ids":["c"]}"#);
        job.files(&[]);
        let out = job
            .command(0, 1)
            .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
            .env("KAFKA_SASL", format!(r#"{{"mechanism":"{mech}","username":"alice","password":"pw-Zq81Vn"}}"#))
            .env("KAFKA_CONNECT_TIMEOUT_SECS", "5")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{mech}: {}", stderr(&out));
        let log = stderr(&out);
        assert!(log.to_ascii_lowercase().contains("sasl"), "{mech}: the failure is the SASL exchange: {log}");
        assert!(!log.contains("pw-Zq81Vn"), "{mech}: password in the output");
        let r = row(&job.id, 0);
        assert_eq!(r["status"], "failed");
        assert!(!format!("{r:?}").contains("pw-Zq81Vn"));
    }
}

/// S3 over HTTPS, trusting the CA named by SSL_CERT_FILE (as the scratch image does with
/// the bundle it ships): TLS terminated in front of moto with a test CA.
#[test]
fn s3_over_https_trusts_ssl_cert_file() {
    if common::skip_without_services("s3_over_https_trusts_ssl_cert_file") {
        return;
    }
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
        r.get("error").is_some_and(|e| e.contains("f.ndjson.gz")),
        "untrusted S3 certificate must fail the file: {r:?}"
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

// ---- SCRAM against the authenticating broker ---------------------------------------------------

/// A SCRAM user of the authenticating broker (test-only credentials from `services.sh env`).
struct ScramUser {
    mechanism: &'static str,
    name: String,
    password: String,
}

impl ScramUser {
    fn of(mechanism: &'static str) -> ScramUser {
        let n = if mechanism == "SCRAM-SHA-256" { 256 } else { 512 };
        ScramUser {
            mechanism,
            name: env(&format!("RW_SCRAM{n}_USER")),
            password: env(&format!("RW_SCRAM{n}_PASSWORD")),
        }
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

/// The bootstrap address of the authenticating broker, or None when the test is skipped:
/// a plain `cargo test` without it says so; under CI or `scripts/test.sh` it is a failure.
fn auth_broker(test: &str) -> Option<String> {
    if common::skip_without_services(test) {
        return None;
    }
    let vars = [
        "RW_KAFKA_AUTH_BOOTSTRAP",
        "RW_TANSU_AUTH_BIN",
        "RW_TANSU_AUTH_USERS_DB",
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
        let bootstrap = env("RW_KAFKA_AUTH_BOOTSTRAP");
        if !std::path::Path::new(&env("RW_TANSU_AUTH_BIN")).exists() {
            format!("{} is not built", env("RW_TANSU_AUTH_BIN"))
        } else if std::net::TcpStream::connect(bootstrap.as_str()).is_err() {
            format!("nothing listens at {bootstrap}")
        } else {
            return Some(bootstrap);
        }
    };
    let required = |v: &str| std::env::var(v).is_ok_and(|x| x == "true" || x == "1");
    if required("CI") || required("RW_REQUIRE_SERVICES") {
        panic!("{test}: the authenticating broker is required here, but {problem}: run scripts/services.sh start-auth-broker");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs the authenticating broker ({problem}); run scripts/services.sh start-auth-broker"
    );
    None
}

/// Creates a topic on a broker that requires a login, logged in with librdkafka's `settings`
/// (the admin client of confluent-kafka: the tansu CLI cannot log in).
fn create_topic_logged_in(bootstrap: &str, topic: &str, partitions: u32, settings: &[String]) {
    const SCRIPT: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
conf = dict(kv.split("=", 1) for kv in sys.argv[4:])
conf["bootstrap.servers"] = sys.argv[1]
admin = AdminClient(conf)  # kept alive until the futures are done
futures = admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)], operation_timeout=15)
for f in futures.values():
    f.result(timeout=30)
"#;
    let out = Command::new(env("RW_PYTHON"))
        .arg("-c")
        .arg(SCRIPT)
        .args([bootstrap, topic, &partitions.to_string()])
        .args(settings)
        .output()
        .unwrap();
    assert!(out.status.success(), "create topic {topic} on {bootstrap}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A job of `lines` lines in one file, sent to `topic` at `bootstrap`.
fn scram_job(bootstrap: &str, topic: &str, lines: &[String]) -> Job {
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
fn scram_login_delivers(test: &str, mechanism: &'static str) {
    let Some(bootstrap) = auth_broker(test) else { return };
    let user = ScramUser::of(mechanism);
    let settings = user.rdkafka("SASL_PLAINTEXT");
    let topic = unique("scram");
    create_topic_logged_in(&bootstrap, &topic, 2, &settings);
    let lines = lines(500);
    let job = scram_job(&bootstrap, &topic, &lines);
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
    let got = consume_with(&bootstrap, &topic, &kcat_args(&settings));
    assert_eq!(values(&got), sorted(lines), "{mechanism}: every line, byte for byte");
}

#[test]
fn scram_sha_256_login_delivers_every_line() {
    scram_login_delivers("scram_sha_256_login_delivers_every_line", "SCRAM-SHA-256");
}

#[test]
fn scram_sha_512_login_delivers_every_line() {
    scram_login_delivers("scram_sha_512_login_delivers_every_line", "SCRAM-SHA-512");
}

/// A login the broker refuses (`username`/`password` for `mechanism`): exit 1 within seconds,
/// the row `failed`, the password nowhere, nothing sent to the topic (which exists, so a
/// worker let through would deliver). `reason` is what the broker's server-final message says
/// (rskafka logs it). Returns the worker's stderr and the row's error.
fn refused_login(
    bootstrap: &str,
    mechanism: &'static str,
    username: &str,
    password: &str,
    reason: &str,
) -> (String, String) {
    let owner = ScramUser::of(mechanism);
    let settings = owner.rdkafka("SASL_PLAINTEXT");
    let topic = unique("refused");
    create_topic_logged_in(bootstrap, &topic, 1, &settings);
    let job = scram_job(bootstrap, &topic, &lines(50));
    let sasl = format!(r#"{{"mechanism":"{mechanism}","username":"{username}","password":"{password}"}}"#);
    let start = Instant::now();
    let out = job
        .command(0, 1)
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("KAFKA_SASL", sasl)
        .env("KAFKA_CONNECT_TIMEOUT_SECS", "5")
        .output()
        .unwrap();
    let took = start.elapsed();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{mechanism} {username}: {log}");
    assert!(took < Duration::from_secs(15), "{mechanism} {username}: exit 1 after {took:?}");
    assert!(log.contains(reason), "{mechanism} {username}: the broker's answer ({reason}) shows: {log}");
    assert!(!log.contains(password), "{mechanism} {username}: password in the output");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed", "{mechanism} {username}: {r:?}");
    assert!(!format!("{r:?}").contains(password), "{mechanism} {username}: password in the row");
    assert_eq!(num(&r, "success_count"), 0, "{mechanism} {username}: {r:?}");
    assert!(consume_with(bootstrap, &topic, &kcat_args(&settings)).is_empty(), "{mechanism} {username}: sent nothing");
    (log, r.get("error").cloned().unwrap_or_default())
}

#[test]
fn a_wrong_scram_password_fails_and_sends_nothing() {
    let Some(bootstrap) = auth_broker("a_wrong_scram_password_fails_and_sends_nothing") else { return };
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let user = ScramUser::of(mechanism);
        let (log, _) = refused_login(&bootstrap, mechanism, &user.name, "wrong-pw-Kx93Lm", "invalid proof");
        assert!(!log.contains(&user.password), "{mechanism}: the user's real password in the output");
    }
}

#[test]
fn an_unknown_scram_user_fails_and_sends_nothing() {
    let Some(bootstrap) = auth_broker("an_unknown_scram_user_fails_and_sends_nothing") else { return };
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        refused_login(&bootstrap, mechanism, "rw-nobody", "nobody-pw-Qe42Zc", "unknown user");
    }
}

/// A refused login stops the worker as soon as the broker refuses (not when
/// `KAFKA_CONNECT_TIMEOUT_SECS` runs out: rskafka alone would retry it like an unreachable
/// broker), and its error names the mechanism and the user.
#[test]
fn a_refused_scram_login_stops_at_once_and_names_the_mechanism_and_the_user() {
    let Some(bootstrap) = auth_broker("a_refused_scram_login_stops_at_once_and_names_the_mechanism_and_the_user")
    else {
        return;
    };
    for (mechanism, username) in
        [("SCRAM-SHA-256", ScramUser::of("SCRAM-SHA-256").name), ("SCRAM-SHA-512", "rw-nobody".into())]
    {
        let job = scram_job(&bootstrap, &unique("refused"), &lines(1));
        let start = Instant::now();
        let out = job
            .command(0, 1)
            .env("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
            .env(
                "KAFKA_SASL",
                format!(r#"{{"mechanism":"{mechanism}","username":"{username}","password":"wrong-pw-Kx93Lm"}}"#),
            )
            .env("KAFKA_CONNECT_TIMEOUT_SECS", "60")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(start.elapsed() < Duration::from_secs(15), "{mechanism}: exit 1 after {:?}", start.elapsed());
        let fatal = stderr(&out).lines().filter(|l| l.contains("fatal")).collect::<Vec<_>>().join("\n");
        let error = row(&job.id, 0).get("error").cloned().unwrap_or_default();
        for text in [&fatal, &error] {
            assert!(text.contains(mechanism) && text.contains(&username), "{mechanism} {username}: {text}");
            assert!(!text.contains("wrong-pw-Kx93Lm"));
        }
    }
}

/// SASL_SSL: TLS terminated by socat in front of an authenticating broker with the same users
/// (a copy of the database `start-auth-broker` made when it held only them), advertised at the
/// TLS port. A job logged in with SCRAM-SHA-512, verifying the CA, completes.
#[test]
fn scram_over_tls_delivers_every_line() {
    let Some(_) = auth_broker("scram_over_tls_delivers_every_line") else { return };
    let (tls_port, plain_port) = (19447u16, 19448u16);
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let users_db = std::path::PathBuf::from(env("RW_TANSU_AUTH_USERS_DB"));
    for suffix in ["", "-wal", "-shm"] {
        let from = std::path::PathBuf::from(format!("{}{suffix}", users_db.display()));
        if from.exists() {
            std::fs::copy(&from, dir.path().join(format!("auth.db{suffix}"))).unwrap();
        }
    }
    assert!(dir.path().join("auth.db").exists(), "no users database at {}", users_db.display());
    // tansu takes the path of sqlite://PATH as relative to its working directory.
    let broker = Command::new(env("RW_TANSU_AUTH_BIN"))
        .current_dir(dir.path())
        .args([
            "broker",
            "--authentication",
            "--cluster-id",
            "rw-scram",
            "--listener-url",
            &format!("tcp://127.0.0.1:{plain_port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{tls_port}"),
            "--storage-engine",
            "sqlite://auth.db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socat = tls_terminator(tls_port, dir.path(), &format!("127.0.0.1:{plain_port}"));
    let _procs = Procs(vec![broker, socat]);
    wait_port(plain_port);
    wait_port(tls_port);
    let bootstrap = format!("127.0.0.1:{tls_port}");
    let ca = dir.path().join("ca.pem");
    let user = ScramUser::of("SCRAM-SHA-512");
    let mut settings = user.rdkafka("SASL_SSL");
    settings.push(format!("ssl.ca.location={}", ca.display()));
    let topic = unique("scram-tls");
    create_topic_logged_in(&bootstrap, &topic, 2, &settings);
    let lines = lines(500);
    let job = scram_job(&bootstrap, &topic, &lines);
    let out = job
        .command(0, 1)
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("KAFKA_SSL_CA_FILE", &ca)
        .env("KAFKA_SASL", user.sasl())
        .output()
        .unwrap();
    assert_success(&out);
    assert!(!stderr(&out).contains(&user.password), "password in the output");
    assert_eq!(row(&job.id, 0)["status"], "completed");
    assert_eq!(values(&consume_with(&bootstrap, &topic, &kcat_args(&settings))), sorted(lines));
}
