//! `reprocessing-worker plan`: the admin service's preparation, for users without it.
//!
//! Lists the `.ndjson`, `.ndjson.gz` and `.ndjson.zst` files under an S3 or GCS prefix
//! (paging through the listing) or a local directory, applies the admin's filename-timestamp
//! window, orders the list so that the workers' byte totals are balanced under the
//! pod-i-takes-i-mod-N rule, and prints what the admin creates, by its names and labels: the
//! `-files` ConfigMap (gzipped `files.json`), the `-config` ConfigMap (`config.json`), the
//! `-credentials` Secret (as environment) and the Indexed Job, as one stream for `kubectl
//! apply -f -`. Each document is JSON, which is YAML. Where the Job differs from the admin's
//! (restart and failure policies, resources, security context), `deploy/k8s` says why.

use chrono::{DateTime, NaiveDateTime, Utc};
use sonic_rs::{json, JsonValueMutTrait};

use crate::jobfile::FileEntry;

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its path as files.json writes it: `s3://bucket/key`, `gs://bucket/object` or a local path.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified, if the listing says.
    pub modified: Option<DateTime<Utc>>,
}

/// The job a plan describes.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    /// The job's id: the pods' `JOB_ID`, their `job-id` label, and (sanitized) part of every resource's name.
    pub job_id: String,
    /// The Kubernetes namespace of every resource.
    pub namespace: String,
    /// The worker's container image.
    pub image: String,
    /// Workers asked for (the Job's `completions`, `TOTAL_WORKERS`); `None`: one per file,
    /// at most `MAX_WORKERS`.
    pub workers: Option<u32>,
    /// Pods run at once (the Job's `parallelism`, at most the workers); `None`: all of them.
    pub parallelism: Option<u32>,
    /// config.json as JSON text.
    pub job_config: String,
    /// Environment for the credentials Secret (name, value), in order.
    pub env: Vec<(String, String)>,
    /// The Kafka topic the workers send to (`KAFKA_DESTINATIONS_TOPIC`).
    pub topic: String,
    /// `serviceAccountName`, for GCS Workload Identity (the admin sets none).
    pub service_account: Option<String>,
    /// The pods' `nodeSelector`, as the admin's `KUBERNETES_NODE_SELECTOR` gives it.
    pub node_selector: Vec<(String, String)>,
}

/// The file names a plan lists: the admin's two, and zstd, which the worker reads alike.
pub(crate) const LISTED_SUFFIXES: [&str; 3] = [".ndjson", ".ndjson.gz", ".ndjson.zst"];

/// Most workers a plan makes (as the admin does).
pub(crate) const MAX_WORKERS: usize = 100;

/// The `…YYYY_MM_DDTHH_MM_SS…` time in a file name, if any.
pub(crate) fn name_time(path: &str) -> Option<DateTime<Utc>> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let b = name.as_bytes();
    (0..b.len().saturating_sub(18)).find_map(|i| {
        let s = name.get(i..i + 19)?;
        NaiveDateTime::parse_from_str(s, "%Y_%m_%dT%H_%M_%S").ok().map(|t| t.and_utc())
    })
}

/// Keeps NDJSON files inside the admin's window: a file is skipped when its name's time
/// minus 24 h is after `date_to`, or when it was last modified before `date_from`. A name
/// without a time is kept (the admin skips it when a window is set: see [`untimed`]).
pub fn select(files: Vec<Listed>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Vec<Listed> {
    files
        .into_iter()
        .filter(|f| LISTED_SUFFIXES.iter().any(|s| f.path.ends_with(s)))
        .filter(|f| !matches!((to, name_time(&f.path)), (Some(to), Some(t)) if t - chrono::Duration::hours(24) > to))
        .filter(|f| !matches!((from, f.modified), (Some(from), Some(m)) if m < from))
        .collect()
}

/// The kept files whose names carry no time, when a date window is set: the admin would have
/// skipped them; here they are kept, and the worker filters their lines by `messageCreated`.
pub fn untimed(files: &[Listed], from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Vec<&str> {
    if from.is_none() && to.is_none() {
        return Vec::new();
    }
    files.iter().filter(|f| name_time(&f.path).is_none()).map(|f| f.path.as_str()).collect()
}

/// Orders `files` for `n` workers so that worker i (positions i, n+i, …) gets a balanced
/// share of the bytes: rounds of n files, largest first, each to the least-loaded worker;
/// then the workers are relabelled so that a short last round lands on the first indices.
pub fn balance(mut files: Vec<Listed>, n: usize) -> Vec<Listed> {
    let n = n.max(1);
    files.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let mut load = vec![0u64; n];
    let mut slots: Vec<Vec<Listed>> = vec![Vec::new(); n];
    for round in files.chunks(n) {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&w| (load[w], w));
        for (f, &w) in round.iter().zip(order.iter()) {
            load[w] += f.size;
            slots[w].push(f.clone());
        }
    }
    // Workers with more files (those that got one in the last round) take the low indices.
    slots.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let rounds = slots.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(files.len());
    for r in 0..rounds {
        for s in &slots {
            if let Some(f) = s.get(r) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// Number of workers: as asked, else one per file, at most `MAX_WORKERS`, at least 1.
pub fn worker_count(asked: Option<u32>, files: usize) -> usize {
    asked.map(|w| w as usize).unwrap_or(files.min(MAX_WORKERS)).max(1)
}

/// The manifests, as one `---`-separated stream.
pub fn manifests(spec: &PlanSpec, files: &[Listed]) -> String {
    let workers = worker_count(spec.workers, files.len());
    let entries: Vec<FileEntry> = files.iter().map(|f| FileEntry { path: f.path.clone(), size: f.size }).collect();
    let files_json = sonic_rs::to_string(
        &entries.iter().map(|e| json!({"path": e.path.as_str(), "size": e.size})).collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let _ = e.write_all(files_json.as_bytes());
        e.finish().unwrap_or_default()
    };
    // The admin's names and labels: its log viewer finds the pods by `job-id`.
    let name = format!("reprocess-{}", sanitize(&spec.job_id));
    let labels = json!({
        "app": "bulker-reprocessing", "job-id": label_value(&spec.job_id),
        "app.kubernetes.io/name": "reprocessing-worker"
    });
    let meta = |suffix: &str, kind: Option<&str>| {
        let mut labels = labels.clone();
        if let Some(kind) = kind {
            labels.as_object_mut().expect("an object").insert(&"type", kind);
        }
        json!({"name": format!("{name}{suffix}"), "namespace": spec.namespace.as_str(), "labels": labels})
    };
    let configmap = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("-files", Some("file-list")),
        "binaryData": {"files.json": base64(&gz)},
        "data": {"worker_count": workers.to_string(), "total_files": files.len().to_string()}
    });
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("-config", Some("job-config")),
        "data": {"config.json": spec.job_config.as_str()}
    });
    let mut env_data = sonic_rs::Object::new();
    for (k, v) in &spec.env {
        env_data.insert(k, v.as_str());
    }
    let env_secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta("-credentials", Some("credentials")),
        "type": "Opaque", "stringData": env_data
    });
    let env = json!([
        {"name": "JOB_ID", "value": spec.job_id.as_str()},
        {"name": "TOTAL_WORKERS", "value": workers.to_string()},
        {"name": "WORKER_INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "KAFKA_DESTINATIONS_TOPIC", "value": spec.topic.as_str()},
        {"name": "FILES_CONFIG_PATH", "value": "/config/files/files.json"},
        {"name": "JOB_CONFIG_PATH", "value": "/config/job/config.json"},
        {"name": "LOG_FORMAT", "value": "json"},
        {"name": "METRICS_ADDR", "value": format!("0.0.0.0:{METRICS_PORT}")},
        {"name": "METRICS_LINGER_SECS", "value": METRICS_LINGER_SECS.to_string()}
    ]);
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta("", None),
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": spec.parallelism.map(|p| p as usize).unwrap_or(workers).min(workers),
            "backoffLimit": 6,
            // A replacement pod starts only once the old one has failed, never beside it.
            "podReplacementPolicy": "Failed",
            // Evictions and drains do not use up backoffLimit; an invalid configuration
            // (exit 2) fails the job at once instead of retrying.
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
            ]},
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels.clone(), "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": METRICS_PORT.to_string(), "prometheus.io/path": "/metrics"
                }},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 30,
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "worker",
                        "image": spec.image.as_str(),
                        "env": env,
                        "envFrom": [{"secretRef": {"name": format!("{name}-credentials")}}],
                        "volumeMounts": [
                            {"name": "files", "mountPath": "/config/files", "readOnly": true},
                            {"name": "job", "mountPath": "/config/job", "readOnly": true}
                        ],
                        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                        // The status loop turns every 2 s even when Kafka or the rate limit
                        // holds the worker back; /healthz fails after 60 s without a turn, so
                        // the probe restarts only a stuck process (after about 2 minutes).
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 5},
                        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}
                    }],
                    "volumes": [
                        {"name": "files", "configMap": {"name": format!("{name}-files")}},
                        {"name": "job", "configMap": {"name": format!("{name}-config")}}
                    ],
                    // As the admin's: arm64 nodes are often tainted for opt-in; the image
                    // is built for both.
                    "tolerations": [
                        {"key": "kubernetes.io/arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}
                    ]
                }
            }
        }
    });
    let pod = job.pointer_mut(["spec", "template", "spec"]).and_then(|p| p.as_object_mut()).expect("the pod spec");
    if let Some(account) = &spec.service_account {
        pod.insert(&"serviceAccountName", account.as_str());
    }
    if !spec.node_selector.is_empty() {
        let mut selector = sonic_rs::Object::new();
        for (k, v) in &spec.node_selector {
            selector.insert(k, v.as_str());
        }
        pod.insert(&"nodeSelector", selector);
    }
    [configmap, config_map, env_secret, job]
        .iter()
        .map(|d| sonic_rs::to_string_pretty(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

/// The port the Job's pods serve `/metrics`, `/healthz` and `/readyz` on (`METRICS_ADDR`).
pub(crate) const METRICS_PORT: u16 = 9464;
/// How long the Job's pods serve their final metrics after the run (`METRICS_LINGER_SECS`):
/// two scrapes at Prometheus' common 15 s interval.
pub(crate) const METRICS_LINGER_SECS: u64 = 30;

/// The job id as a label value, as the admin labels its pods (`job-id=<id>`), when it is a
/// valid one (at most 63 characters of letters, digits, `-`, `_` and `.`, alphanumeric at
/// both ends); else a sanitized form, which the admin's log viewer will not find.
pub(crate) fn label_value(id: &str) -> String {
    let valid = id.len() <= 63
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        id.to_owned()
    } else {
        sanitize(id)
    }
}

/// A DNS-1123 label fragment: lower case, digits and '-'.
fn sanitize(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    out.truncate(40);
    out.trim_matches('-').to_string()
}

fn base64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests;
