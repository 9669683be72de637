use super::*;

fn f(path: &str, size: u64) -> Listed {
    Listed { path: path.into(), size, modified: None }
}

#[test]
fn filename_times() {
    assert_eq!(
        name_time("s3://b/x/ingest_2024_05_01T10_20_30.ndjson.gz").unwrap().to_rfc3339(),
        "2024-05-01T10:20:30+00:00"
    );
    assert_eq!(name_time("plain.ndjson"), None);
}

#[test]
fn selection_window() {
    let to = DateTime::parse_from_rfc3339("2024-05-02T00:00:00Z").unwrap().to_utc();
    let from = DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").unwrap().to_utc();
    let old = DateTime::parse_from_rfc3339("2024-04-01T00:00:00Z").unwrap().to_utc();
    let files = vec![
        f("a_2024_05_02T23_00_00.ndjson", 1),     // minus 24 h is before date_to: kept
        f("b_2024_05_03T00_00_01.ndjson.gz", 1),  // minus 24 h is after date_to: skipped
        f("c.json", 1),                           // not NDJSON
        f("z_2024_05_01T10_00_00.ndjson.zst", 1), // zstd, inside the window: kept
        Listed { modified: Some(old), ..f("d.ndjson", 1) }, // modified before date_from
        f("e.ndjson", 1),
    ];
    let kept: Vec<String> = select(files, Some(from), Some(to)).into_iter().map(|f| f.path).collect();
    assert_eq!(kept, vec!["a_2024_05_02T23_00_00.ndjson", "z_2024_05_01T10_00_00.ndjson.zst", "e.ndjson"]);
    let kept: Vec<Listed> = kept.iter().map(|p| f(p, 1)).collect();
    assert_eq!(untimed(&kept, Some(from), None), vec!["e.ndjson"], "named in the warning");
    assert!(untimed(&kept, None, None).is_empty(), "no window, nothing to warn of");
}

#[test]
fn balance_keeps_modulo_rule_and_evens_bytes() {
    let sizes = [100u64, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5];
    let files: Vec<Listed> = sizes.iter().enumerate().map(|(i, s)| f(&format!("f{i}"), *s)).collect();
    for n in 1..6 {
        let ordered = balance(files.clone(), n);
        assert_eq!(ordered.len(), files.len());
        let mut load = vec![0u64; n];
        for (pos, file) in ordered.iter().enumerate() {
            load[pos % n] += file.size;
        }
        let (min, max) = (*load.iter().min().unwrap(), *load.iter().max().unwrap());
        assert!(max - min <= 100, "n={n} loads {load:?}");
        let naive: Vec<u64> = (0..n).map(|w| sizes.iter().skip(w).step_by(n).sum()).collect();
        assert!(
            max - min <= naive.iter().max().unwrap() - naive.iter().min().unwrap(),
            "n={n} no worse than files.json order"
        );
    }
}

#[test]
fn manifests_carry_the_job() {
    let spec = PlanSpec {
        job_id: "Job_1".into(),
        namespace: "jitsu".into(),
        image: "img:1".into(),
        workers: None,
        parallelism: Some(2),
        job_config: r#"{"connection_ids":["c"]}"#.into(),
        env: vec![("DATABASE_URL".into(), "postgres://x".into())],
        topic: "t".into(),
        service_account: Some("gcs-reader".into()),
        node_selector: vec![("pool".into(), "replay".into())],
    };
    let out = manifests(&spec, &[f("s3://b/a.ndjson", 1), f("s3://b/b.ndjson", 2), f("s3://b/c.ndjson", 3)]);
    let docs: Vec<&str> = out.split("\n---\n").collect();
    assert_eq!(docs.len(), 4);
    let job: sonic_rs::Value = sonic_rs::from_str(docs[3]).unwrap();
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};
    assert_eq!(job.pointer(["spec", "completions"]).and_then(|v| v.as_u64()), Some(3));
    assert_eq!(job.pointer(["spec", "parallelism"]).and_then(|v| v.as_u64()), Some(2));
    // The admin's names and labels: its log viewer selects `job-id=<id>`.
    assert_eq!(job.pointer(["metadata", "name"]).and_then(|v| v.as_str()), Some("reprocess-job-1"));
    for labels in [job.pointer(["metadata", "labels"]), job.pointer(["spec", "template", "metadata", "labels"])] {
        let labels = labels.unwrap();
        assert_eq!(labels.get("job-id").and_then(|v| v.as_str()), Some("Job_1"));
        assert_eq!(labels.get("app").and_then(|v| v.as_str()), Some("bulker-reprocessing"));
    }
    let pod = job.pointer(["spec", "template", "spec"]).unwrap();
    assert_eq!(pod.get("serviceAccountName").and_then(|v| v.as_str()), Some("gcs-reader"));
    assert_eq!(pod.pointer(["nodeSelector", "pool"]).and_then(|v| v.as_str()), Some("replay"));
    let toleration = pod.get("tolerations").and_then(|t| t.as_array()).and_then(|t| t.first()).unwrap();
    assert_eq!(toleration.get("key").and_then(|v| v.as_str()), Some("kubernetes.io/arch"));
    assert_eq!(toleration.get("value").and_then(|v| v.as_str()), Some("arm64"));
    assert_eq!(job.pointer(["spec", "ttlSecondsAfterFinished"]).and_then(|v| v.as_u64()), Some(86400));
    // Metrics: the port, the scrape annotations, the probes on it, and the address the worker serves.
    let container = &pod["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(METRICS_PORT as u64));
    let annotations = job.pointer(["spec", "template", "metadata", "annotations"]).unwrap();
    assert_eq!(annotations.get("prometheus.io/scrape").and_then(|v| v.as_str()), Some("true"));
    assert_eq!(annotations.get("prometheus.io/port").and_then(|v| v.as_str()), Some("9464"));
    assert_eq!(container.pointer(["livenessProbe", "httpGet", "path"]).and_then(|v| v.as_str()), Some("/healthz"));
    assert_eq!(container.pointer(["readinessProbe", "httpGet", "path"]).and_then(|v| v.as_str()), Some("/readyz"));
    let env = container.get("env").and_then(|e| e.as_array()).unwrap();
    let metrics_addr = env.iter().find(|e| e.get("name").and_then(|n| n.as_str()) == Some("METRICS_ADDR")).unwrap();
    assert_eq!(metrics_addr.get("value").and_then(|v| v.as_str()), Some("0.0.0.0:9464"));
    let names: Vec<String> = docs[..3]
        .iter()
        .map(|d| sonic_rs::from_str::<sonic_rs::Value>(d).unwrap())
        .map(|d| {
            format!("{} {}", d["kind"].as_str().unwrap(), d.pointer(["metadata", "name"]).unwrap().as_str().unwrap())
        })
        .collect();
    assert_eq!(
        names,
        ["ConfigMap reprocess-job-1-files", "ConfigMap reprocess-job-1-config", "Secret reprocess-job-1-credentials"]
    );
    // Kubernetes never runs two pods of one index at once, evictions are not failures, and
    // an invalid configuration (exit 2) fails the job.
    assert_eq!(job.pointer(["spec", "podReplacementPolicy"]).and_then(|v| v.as_str()), Some("Failed"));
    assert_eq!(job.pointer(["spec", "template", "spec", "restartPolicy"]).and_then(|v| v.as_str()), Some("Never"));
    let rules = job.pointer(["spec", "podFailurePolicy", "rules"]).and_then(|v| v.as_array()).unwrap();
    let rule = |action: &str| rules.iter().find(|r| r.get("action").and_then(|a| a.as_str()) == Some(action));
    let fail = rule("FailJob").expect("a FailJob rule");
    assert_eq!(fail.pointer(["onExitCodes", "values"]).map(|v| v.to_string()).as_deref(), Some("[2]"));
    assert_eq!(fail.pointer(["onExitCodes", "operator"]).and_then(|v| v.as_str()), Some("In"));
    let ignore = rule("Ignore").expect("an Ignore rule");
    let on = ignore.pointer(["onPodConditions"]).and_then(|v| v.as_array()).expect("pod conditions");
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].get("type").and_then(|v| v.as_str()), Some("DisruptionTarget"));
    assert_eq!(on[0].get("status").and_then(|v| v.as_str()), Some("True"));
    let cm: sonic_rs::Value = sonic_rs::from_str(docs[0]).unwrap();
    let b64 = cm.pointer(["binaryData", "files.json"]).and_then(|v| v.as_str()).unwrap().to_string();
    assert!(!b64.is_empty());
}

#[test]
fn a_job_id_is_the_label_value_when_it_can_be() {
    assert_eq!(label_value("Job_1.a-b"), "Job_1.a-b");
    assert_eq!(label_value("-x"), "x");
    assert_eq!(label_value("a b"), "a-b");
    assert_eq!(label_value(&"x".repeat(70)).len(), 40);
}

#[test]
fn base64_matches_the_rfc() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

/// The example in `deploy/k8s` is a job that replays something: its config.json parses, and a
/// line of its date window passes its filter (an example with `"stream_ids": []` selected no
/// stream, so it skipped every line).
#[test]
fn the_deploy_examples_job_keeps_a_line_of_its_window() {
    let yaml = include_str!("../../../../deploy/k8s/indexed-job.yaml");
    let line = yaml.lines().find(|l| l.trim_start().starts_with("config.json: '")).expect("the example's config.json");
    let json = line.trim().trim_start_matches("config.json: '").trim_end_matches('\'');
    let job = crate::jobfile::parse_job_config(json.as_bytes()).expect("the example's config.json parses");
    let filter = crate::filter::Filter::new(&job.stream_ids, job.date_from, job.date_to).with_events(&job.events);
    let event = br#"{"messageCreated":"2024-05-01T12:00:00Z","messageId":"m","type":"track","origin":{"sourceId":"s1","slug":"s"}}"#;
    let env = crate::extract::extract_with(event, filter.fields()).unwrap();
    assert_eq!(filter.check(&env), Ok(()));
    assert!(!job.connection_ids.is_empty(), "routed without a repository");
}

/// `deploy/k8s/indexed-job.yaml` is the Job `plan` writes for its example (job `example`,
/// three workers, its image and topic): its spec (backoff limit, failure policy, probes,
/// port, resources, security, volumes, environment) is the same object as `plan`'s, so that
/// the two cannot drift apart; only the example's comments are its own.
#[test]
fn the_deploy_example_is_the_job_plan_writes() {
    use serde::Deserialize;
    use yaml_serde::Value;
    let yaml = include_str!("../../../../deploy/k8s/indexed-job.yaml");
    // Both read as YAML (JSON is YAML): maps compare whatever their keys' order.
    let job = |docs: Vec<Value>| docs.into_iter().find(|d| d["kind"] == "Job").expect("a Job");
    let example = job(yaml_serde::Deserializer::from_str(yaml).map(|d| Value::deserialize(d).unwrap()).collect());
    let spec = PlanSpec {
        job_id: "example".into(),
        namespace: String::new(),
        image: "jitsucom/reprocessing-worker:latest".into(),
        workers: Some(3),
        parallelism: None,
        job_config: "{}".into(),
        env: Vec::new(),
        topic: "destination-messages".into(),
        service_account: None,
        node_selector: Vec::new(),
    };
    let out = manifests(&spec, &[f("s3://b/a.ndjson", 1), f("s3://b/b.ndjson", 2), f("s3://b/c.ndjson", 3)]);
    let planned = job(out.split("\n---\n").map(|d| yaml_serde::from_str(d).unwrap()).collect());
    assert!(
        example["spec"] == planned["spec"],
        "deploy/k8s/indexed-job.yaml's Job spec differs from plan's:\nexample:\n{}\nplan:\n{}",
        yaml_serde::to_string(&example["spec"]).unwrap(),
        yaml_serde::to_string(&planned["spec"]).unwrap()
    );
    assert_eq!(example["metadata"]["labels"], planned["metadata"]["labels"]);
}
