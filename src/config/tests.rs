//! Config parsing tests: every required variable, the index fallback, and the one-line errors.

use super::*;
use crate::cli::Cli;
use std::io::Write;

struct Env {
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

fn env(job_json: &str, files_json: &str, extra: &[&str]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("config.json");
    let files = dir.path().join("files.json");
    std::fs::File::create(&job).unwrap().write_all(job_json.as_bytes()).unwrap();
    std::fs::File::create(&files).unwrap().write_all(files_json.as_bytes()).unwrap();
    let mut args: Vec<String> = vec![
        "reprocessing-worker".into(),
        "--job-config-path".into(),
        job.display().to_string(),
        "--files-config-path".into(),
        files.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Env { _dir: dir, args }
}

const BASE: &[&str] = &[
    "--job-id",
    "job1",
    "--worker-index",
    "1",
    "--total-workers",
    "3",
    "--database-url",
    "postgres://u:pw@h/db",
    "--kafka-bootstrap-servers",
    "k1:9092, k2:9093",
];

/// Parses flags only: the tests must not see the environment of the machine they run on
/// (the test script exports DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, ...).
fn parse(args: &[String]) -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_args(|a| a.env(None::<&'static str>));
    let m = cmd.try_get_matches_from(args).expect("clap accepts the flags");
    Cli::from_arg_matches(&m).unwrap()
}

fn load(e: &Env) -> Result<Config, ConfigError> {
    Config::load(&parse(&e.args).worker)
}

fn with(extra: &[&str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = BASE.to_vec();
    for s in extra {
        v.push(Box::leak(s.to_string().into_boxed_str()));
    }
    v
}

#[test]
fn loads_a_complete_config() {
    let files = r#"[{"path":"a","size":1},{"path":"b","size":2},{"path":"c","size":3},{"path":"d","size":4},{"path":"e","size":5}]"#;
    let e = env(r#"{"connection_ids":["c1","c2"]}"#, files, BASE);
    let c = load(&e).unwrap();
    assert_eq!((c.job_id.as_str(), c.worker_index, c.total_workers), ("job1", 1, 3));
    assert_eq!(c.kafka.as_ref().unwrap().bootstrap, vec!["k1:9092", "k2:9093"]);
    assert_eq!(c.kafka.as_ref().unwrap().compression, KafkaCompression::Zstd);
    assert_eq!(c.topic, "destination-messages");
    assert!(c.repository.is_none());
    assert_eq!(c.job.connection_ids, ["c1", "c2"]);
    let assigned: Vec<_> = c.assigned_files().iter().map(|(i, f)| (*i, f.path.clone())).collect();
    assert_eq!(assigned, vec![(1, "b".to_string()), (4, "e".to_string())]);
}

#[test]
fn modulo_assignment_covers_every_file_once() {
    for total in 1..7u32 {
        for len in 0..20usize {
            let mut seen = vec![0; len];
            for i in 0..total {
                for p in assigned_positions(len, i, total) {
                    seen[p] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "len {len} total {total}");
        }
    }
}

#[test]
fn job_completion_index_is_the_fallback() {
    let args = with(&[]).into_iter().filter(|a| *a != "--worker-index" && *a != "1").collect::<Vec<_>>();
    let mut args = args;
    args.extend(["--job-completion-index", "2"]);
    let e = env(r#"{"connection_ids":["c"]}"#, "[]", &args);
    assert_eq!(load(&e).unwrap().worker_index, 2);
}

#[test]
fn dry_run_needs_no_kafka_and_repository_is_needed_without_connection_ids() {
    let no_kafka: Vec<&str> = BASE[..8].to_vec();
    let e = env(r#"{"dry_run":true,"connection_ids":["c"]}"#, "[]", &no_kafka);
    assert!(load(&e).unwrap().kafka.is_none());

    let e = env(r#"{"connection_ids":["c"]}"#, "[]", &no_kafka);
    assert_eq!(load(&e).unwrap_err().to_string(), "KAFKA_BOOTSTRAP_SERVERS is required");

    let e = env("{}", "[]", BASE);
    assert!(load(&e).unwrap_err().to_string().starts_with("REPOSITORY_URL"));
    let e = env("{}", "[]", &with(&["--repository-url", "http://repo", "--repository-auth-token", "tok"]));
    assert!(load(&e).unwrap().repository.is_some());
}

#[test]
fn a_map_selector_needs_the_repository_only_for_its_rules_that_use_it() {
    let e = env(r#"{"stream_ids":{"s1":"c1","*":["c2"]}}"#, "[]", BASE);
    assert!(load(&e).unwrap().repository.is_none(), "explicit ids only: no repository");
    let e = env(r#"{"stream_ids":{"s1":["c1","*"]}}"#, "[]", BASE);
    assert!(load(&e).unwrap_err().to_string().contains("REPOSITORY_URL (a stream_ids rule uses \"*\""));
    let e = env(r#"{"stream_ids":{"s1":"c1"},"connections_filter":true}"#, "[]", BASE);
    assert!(load(&e).unwrap_err().to_string().starts_with("REPOSITORY_URL"));
    // connection_ids with a map is rejected, naming both fields.
    let e = env(r#"{"stream_ids":{"s1":"c1"},"connection_ids":["c2"]}"#, "[]", BASE);
    let msg = load(&e).unwrap_err().to_string();
    assert!(msg.contains("connection_ids") && msg.contains("stream_ids"), "{msg}");
}

#[test]
fn errors_name_the_variable() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--worker-index", "0", "--total-workers", "1", "--database-url", "x"], "JOB_ID is required"),
        (
            vec!["--job-id", "j", "--total-workers", "1", "--database-url", "x"],
            "WORKER_INDEX (or JOB_COMPLETION_INDEX) is required",
        ),
        (vec!["--job-id", "j", "--worker-index", "0", "--database-url", "x"], "TOTAL_WORKERS is required"),
        (vec!["--job-id", "j", "--worker-index", "0", "--total-workers", "1"], "DATABASE_URL is required"),
        (
            vec!["--job-id", "j", "--worker-index", "x", "--total-workers", "1", "--database-url", "x"],
            "WORKER_INDEX: expected a non-negative integer",
        ),
        (
            vec!["--job-id", "j", "--worker-index", "0", "--total-workers", "0", "--database-url", "x"],
            "TOTAL_WORKERS: must be at least 1",
        ),
        (
            vec!["--job-id", "j", "--worker-index", "3", "--total-workers", "3", "--database-url", "x"],
            "WORKER_INDEX: 3 is not below TOTAL_WORKERS (3)",
        ),
    ];
    for (args, want) in cases {
        let e = env(r#"{"connection_ids":["c"]}"#, "[]", &args);
        let got = load(&e).unwrap_err().to_string();
        assert!(got.starts_with(want), "{args:?}: {got}");
    }
}

#[test]
fn file_errors_name_the_file() {
    let e = env(r#"{"batch_size":"x"}"#, "[]", BASE);
    assert!(load(&e).unwrap_err().to_string().starts_with("config.json: field batch_size"));
    let e = env(r#"{"connection_ids":["c"]}"#, "{", BASE);
    assert!(load(&e).unwrap_err().to_string().starts_with("files.json: invalid JSON"));
    let mut e = env("{}", "[]", BASE);
    e.args[2] = "/nonexistent/config.json".into();
    assert!(load(&e).unwrap_err().to_string().starts_with("cannot read JOB_CONFIG_PATH file /nonexistent/config.json"));
}

#[test]
fn start_file_is_found_once_at_load_or_is_a_config_error_naming_the_nearest() {
    let files = r#"[{"path":"s3://b/day/f_01.ndjson.gz","size":1},{"path":"s3://b/day/f_02.ndjson.gz","size":1}]"#;
    let e = env(r#"{"connection_ids":["c"],"start_file":"day/f_02.ndjson.gz","start_line":4}"#, files, BASE);
    assert_eq!(load(&e).unwrap().start, StartAt { file: Some(1), line: 4 });
    let e = env(r#"{"connection_ids":["c"],"start_file":"s3://b/day/f_2.ndjson.gz"}"#, files, BASE);
    let msg = load(&e).unwrap_err().to_string();
    assert!(
        msg.starts_with(r#"config.json: field start_file "s3://b/day/f_2.ndjson.gz" is not in files.json"#)
            && msg.ends_with(r#"the nearest paths there: "s3://b/day/f_02.ndjson.gz", "s3://b/day/f_01.ndjson.gz""#),
        "{msg}"
    );
}

#[test]
fn sasl_settings_parse_without_echoing_the_password() {
    let s = parse_sasl(r#"{"mechanism":"SCRAM-SHA-512","username":"u","password":"pw-123"}"#).unwrap();
    assert_eq!(s.mechanism, SaslMechanism::ScramSha512);
    assert_eq!(s.password.expose(), "pw-123");
    let e = parse_sasl(r#"{"mechanism":"GSSAPI","username":"u","password":"pw-123"}"#).unwrap_err();
    assert!(!e.to_string().contains("pw-123"));
    let e = parse_sasl(r#"{"password":"pw-123" "#).unwrap_err();
    assert!(!e.to_string().contains("pw-123"), "{e}");
    let e = env(r#"{"connection_ids":["c"]}"#, "[]", &with(&["--kafka-security-protocol", "SASL_SSL"]));
    assert!(load(&e).unwrap_err().to_string().starts_with("KAFKA_SASL"));
}

#[test]
fn compression_and_protocol_names() {
    let e = env(
        r#"{"connection_ids":["c"]}"#,
        "[]",
        &with(&[
            "--kafka-compression",
            "LZ4",
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl",
            r#"{"username":"u","password":"p"}"#,
        ]),
    );
    let c = load(&e).unwrap();
    let k = c.kafka.unwrap();
    assert_eq!(k.compression, KafkaCompression::Lz4);
    assert_eq!(k.security, SecurityProtocol::SaslSsl);
    assert_eq!(k.sasl.unwrap().mechanism, SaslMechanism::Plain);
}

#[test]
fn kafka_ssl_decides_the_protocol_as_kafkabase_does_unless_the_protocol_is_set() {
    let sasl = r#"{"mechanism":"SCRAM-SHA-512","username":"u","password":"p"}"#;
    for (flags, want) in [
        (vec![], SecurityProtocol::Plaintext),
        (vec!["--kafka-ssl", "true"], SecurityProtocol::Ssl),
        (vec!["--kafka-ssl", "true", "--kafka-sasl", sasl], SecurityProtocol::SaslSsl),
        (vec!["--kafka-ssl", "false", "--kafka-sasl", sasl], SecurityProtocol::Plaintext),
        (
            vec!["--kafka-ssl", "true", "--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl", sasl],
            SecurityProtocol::SaslPlaintext,
        ),
    ] {
        let c = load(&env(r#"{"connection_ids":["c"]}"#, "[]", &with(&flags))).unwrap();
        assert_eq!(c.kafka.unwrap().security, want, "{flags:?}");
    }
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let c = load(&env(
        r#"{"connection_ids":["c"]}"#,
        "[]",
        &with(&[&format!("--kafka-ssl-ca={pem}"), "--kafka-ssl-ca-file", "/ca.pem"]),
    ))
    .unwrap();
    assert_eq!(
        c.kafka.unwrap().ssl_ca,
        [crate::tls::Ca::File("/ca.pem".into()), crate::tls::Ca::Pem(pem.into())],
        "both trusted, as kafkabase sets both"
    );
}

#[test]
fn rate_limits_are_the_pod_setting_or_a_share_of_the_job_limit() {
    let files = r#"[{"path":"a","size":1}]"#;
    let job = r#"{"connection_ids":["c"],"max_events_per_sec":20000,"max_bytes_per_sec":9000000,"parallel_workers":4}"#;
    let c = load(&env(job, files, BASE)).unwrap();
    assert_eq!((c.tuning.rate.events_per_sec, c.tuning.rate.bytes_per_sec), (Some(5_000), Some(2_250_000)));
    let c = load(&env(job, files, &with(&["--max-events-per-sec", "700"]))).unwrap();
    assert_eq!((c.tuning.rate.events_per_sec, c.tuning.rate.bytes_per_sec), (Some(700), Some(2_250_000)));
    // Without parallel_workers, the job limit is shared by TOTAL_WORKERS (3).
    let c = load(&env(r#"{"connection_ids":["c"],"max_events_per_sec":3000}"#, files, BASE)).unwrap();
    assert_eq!((c.tuning.rate.events_per_sec, c.tuning.rate.bytes_per_sec), (Some(1_000), None));
    assert!(load(&env(r#"{"connection_ids":["c"]}"#, files, BASE)).unwrap().tuning.rate.is_unlimited());
    let e = load(&env(r#"{"connection_ids":["c"]}"#, files, &with(&["--max-bytes-per-sec", "0"]))).unwrap_err();
    assert!(e.to_string().starts_with("MAX_BYTES_PER_SEC: must be at least 1"), "{e}");
}

#[test]
fn read_back_caps_have_defaults_and_settings() {
    let e = env(r#"{"connection_ids":["c1"]}"#, r#"[{"path":"a","size":1}]"#, BASE);
    let caps = load(&e).unwrap().tuning.readback;
    assert_eq!((caps.max_records, caps.timeout.as_secs()), (1_000_000, 120));
    let set = with(&["--resume-readback-max-records", "0", "--resume-readback-timeout-secs", "7"]);
    let e = env(r#"{"connection_ids":["c1"]}"#, r#"[{"path":"a","size":1}]"#, &set);
    let caps = load(&e).unwrap().tuning.readback;
    assert_eq!((caps.max_records, caps.timeout.as_secs()), (0, 7));
}

/// A README default as `--help` would show it: numbers without separators, sizes in bytes,
/// code without backticks; `None` for "no default" (required, unset, derived).
fn readme_default(cell: &str) -> Option<String> {
    let cell = cell.trim().trim_matches('`');
    if cell.is_empty() || cell.starts_with('—') || cell.starts_with("required") || cell == "off" {
        return None;
    }
    if let Some(mib) = cell.strip_suffix(" MiB") {
        return Some((mib.trim().parse::<u64>().ok()? << 20).to_string());
    }
    if cell.chars().all(|c| c.is_ascii_digit() || c == ',') {
        return Some(cell.replace(',', ""));
    }
    // Another variable's value, or derived from another setting ("from `KAFKA_SSL`", "system
    // store", …): no literal default.
    let names_a_variable = cell.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    (cell.split_whitespace().nth(1).is_none() && !names_a_variable).then(|| cell.to_owned())
}

/// The README's environment table and `--help` name the same variables with the same
/// defaults: every variable the worker reads is documented, and nothing documented as a
/// setting is missing from the flags.
#[test]
fn the_readme_environment_table_is_the_help() {
    use clap::CommandFactory;
    let readme = include_str!("../../README.md");
    let section = readme.split("### Environment").nth(1).expect("the section");
    let table = section.split("| variable | default | meaning |").nth(1).expect("the table");
    let mut documented = std::collections::BTreeMap::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split(" | ").collect();
        for var in cells[0].trim_start_matches("| ").split(", ") {
            documented.insert(var.trim_matches('`').to_owned(), readme_default(cells[1]));
        }
    }
    // Read by the libraries and the runtime, not flags of the worker.
    let not_flags = ["AWS_*", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "BULKER_KAFKA_*"];
    let cli = Cli::command();
    let mut flags = std::collections::BTreeMap::new();
    for arg in cli.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(var) = arg.get_env().and_then(|v| v.to_str()) else { continue };
        let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        flags.insert(var.to_owned(), (!default.is_empty()).then(|| default.join(",")));
    }
    for (var, default) in &flags {
        let Some(readme) = documented.get(var) else { panic!("{var} is a flag but not in the README's table") };
        let readme = readme.as_deref().map(str::to_ascii_lowercase);
        assert_eq!(readme, default.as_deref().map(str::to_ascii_lowercase), "{var}: README vs --help");
    }
    for var in documented.keys().filter(|v| !not_flags.contains(&v.as_str())) {
        assert!(flags.contains_key(var), "{var} is in the README's table but no flag reads it");
    }
}

#[test]
fn every_duration_setting_has_an_upper_bound_named_in_its_error() {
    let huge = u64::MAX.to_string();
    for (flag, value, want) in [
        ("--shutdown-timeout-secs", huge.as_str(), "SHUTDOWN_TIMEOUT_SECS: 18446744073709551615 is more than"),
        (
            "--status-min-interval-ms",
            "600000",
            "STATUS_MIN_INTERVAL_MS: 600000 is more than the largest allowed, 60000",
        ),
        ("--status-final-timeout-secs", huge.as_str(), "STATUS_FINAL_TIMEOUT_SECS: "),
        ("--resume-readback-timeout-secs", huge.as_str(), "RESUME_READBACK_TIMEOUT_SECS: "),
        ("--kafka-delivery-timeout-secs", huge.as_str(), "KAFKA_DELIVERY_TIMEOUT_SECS: "),
        ("--kafka-connect-timeout-secs", huge.as_str(), "KAFKA_CONNECT_TIMEOUT_SECS: "),
        ("--metrics-linger-secs", "86400", "METRICS_LINGER_SECS: 86400 is more than the largest allowed, 3600"),
    ] {
        let e = env(r#"{"connection_ids":["c"]}"#, "[]", &with(&[flag, value]));
        let got = load(&e).unwrap_err().to_string();
        assert!(got.starts_with(want), "{flag}: {got}");
    }
    // At the bound, accepted.
    let e = env(r#"{"connection_ids":["c"]}"#, "[]", &with(&["--shutdown-timeout-secs", "3600"]));
    assert_eq!(load(&e).unwrap().tuning.shutdown_timeout, Duration::from_secs(3600));
}

#[test]
fn database_url_errors_name_the_variable_and_the_parameter_never_the_password() {
    for (url, want) in [
        ("postgres://u:hunter2@h/db?schema=adm&sslmode=disable", None),
        ("host=h user=u password=hunter2 dbname=db search_path=adm", None),
        ("postgres://u:hunter2@h/db?shema=adm", Some(r#"DATABASE_URL: unknown parameter "shema""#)),
        ("postgres://u:hunter2@h:notaport/db", Some("DATABASE_URL: ")),
        ("postgres://u:hunter2@h/db?connect_timeout=soon", Some("DATABASE_URL: ")),
    ] {
        let mut args: Vec<&str> = BASE.to_vec();
        args[7] = url;
        let e = env(r#"{"connection_ids":["c"]}"#, "[]", &args);
        match (load(&e), want) {
            (Ok(c), None) => assert_eq!(c.database.schema().as_deref(), Some("adm")),
            (Err(e), Some(want)) => {
                let e = e.to_string();
                assert!(e.starts_with(want) && !e.contains("hunter2"), "{url}: {e}");
            }
            (got, want) => panic!("{url}: {got:?}, wanted {want:?}"),
        }
    }
}
