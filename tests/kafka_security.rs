//! Kafka security against the real broker, as far as the tansu build available here allows.
//!
//! TLS, end to end: that tansu cannot terminate TLS itself (its `--cert`/`--key` flags
//! conflict), so TLS is terminated by socat in front of a tansu whose advertised listener is
//! the TLS port: every connection the worker makes — bootstrap and the partition leaders from
//! the metadata — is TLS, with a real certificate chain.
//!
//! SASL: that tansu build answers every mechanism with `NoSharedMechanism` (librdkafka gets
//! the same), so a successful SCRAM/PLAIN login cannot be shown here. What can be shown is
//! that the worker negotiates SASL on the wire with the mechanism it was given, and fails
//! fast with a clear error and without the password.

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
