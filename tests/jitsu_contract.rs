//! The Jitsu contract on the real services: `stream_ids` as a selector (a map of per-stream
//! rules in override and filter mode, `"*"` rules, explicit ids without the repository), the
//! `events` filter, `connection_ids` with a map rejected, the config exactly as the admin
//! writes it, `processed_files` with `start_file`, and the error written while running.
//! Every message is read back with kcat and compared byte for byte with its topic, key and
//! `connection_ids` header; every row's counters are checked exactly.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The streams repository of these tests. `c2`, `c6`, `c7` and `c8` are browser-side
/// destinations and never part of a stream's ids.
const REPO: &str = r#"[
  {"stream":{"id":"s1"},"shard":0,"destinations":[
     {"id":"d1","connectionId":"c1","destinationType":"clickhouse"},
     {"id":"d2","connectionId":"c2","destinationType":"gtm"},
     {"id":"d3","connectionId":"c3","destinationType":"webhook"}]},
  {"stream":{"id":"s-shard"},"shard":2,"destinations":[
     {"id":"d4","connectionId":"c4","destinationType":"bigquery"}]},
  {"stream":{"id":"s-other"},"shard":0,"destinations":[
     {"id":"d5","connectionId":"c5","destinationType":"postgres"},
     {"id":"d6","connectionId":"c6","destinationType":"tag"}]},
  {"stream":{"id":"s-browser"},"shard":0,"destinations":[
     {"id":"d7","connectionId":"c7","destinationType":"logrocket"},
     {"id":"d8","connectionId":"c8","destinationType":"ga4-tag"}]},
  {"stream":{"id":"s-shard3"},"shard":3,"destinations":[
     {"id":"d9","connectionId":"c9","destinationType":"s3"}]}
]"#;

const CREATED: &str = "2024-05-01T10:00:00Z";

/// One message as it must be on the broker: topic, key, headers, value.
type Sent = (String, Option<String>, Vec<(String, String)>, String);

/// The message `line` becomes on `topic` with the header `ids`. Its key, the line's identity,
/// is checked by [`delivered`] and left out of the comparison (the keys' positions are
/// checked in `tests/e2e.rs` and `tests/small_files.rs`).
fn sent(topic: &str, ids: &str, line: &str) -> Sent {
    let _: sonic_rs::Value = sonic_rs::from_str(line).unwrap_or_else(|e| panic!("test line {line}: {e}"));
    (topic.to_string(), None, vec![("connection_ids".to_string(), ids.to_string())], line.to_string())
}

/// Everything on `topics`, read back with kcat, sorted; every key a UUID of its own (then
/// left out, see [`sent`]).
fn delivered(topics: &[&str]) -> Vec<Sent> {
    let msgs: Vec<Msg> = topics.iter().flat_map(|t| consume(t)).collect();
    let keys: std::collections::BTreeSet<&str> = msgs.iter().filter_map(|m| m.key.as_deref()).collect();
    assert_eq!(keys.len(), msgs.len(), "every message has a key of its own");
    assert!(keys.iter().all(|k| uuid::Uuid::parse_str(k).is_ok_and(|u| u.get_version_num() == 8)), "{keys:?}");
    let mut got: Vec<Sent> = msgs.into_iter().map(|m| (m.topic, None, m.headers, m.value)).collect();
    got.sort();
    got
}

fn sorted_sent(mut v: Vec<Sent>) -> Vec<Sent> {
    v.sort();
    v
}

/// A job over one file of `lines`: each line with the message it must become, `None` for a
/// line that is skipped. Returns what must be delivered and how many lines are skipped.
fn one_file(job: &Job, lines: &[(String, Option<Sent>)]) -> (Vec<Sent>, u64) {
    let body: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let want: Vec<Sent> = lines.iter().filter_map(|(_, s)| s.clone()).collect();
    let skipped = (lines.len() - want.len()) as u64;
    (sorted_sent(want), skipped)
}

fn shard(job: &Job, n: u32) -> String {
    format!("{}-shard{n}", job.topic)
}

/// Runs worker 0 of 1 with the streams repository at `repo`.
fn run_with_repo(job: &Job, repo: &RepoServer) -> std::process::Output {
    job.command(0, 1).env("REPOSITORY_URL", repo.url()).output().unwrap()
}

fn assert_completed(job: &Job, index: i32, success: u64, skipped: u64) {
    let r = row(&job.id, index);
    assert_eq!(r["status"], "completed", "{r:?}");
    assert_counts(&r, success, 0, skipped);
    assert_eq!(num(&r, "processed_files"), num(&r, "assigned_files"), "{r:?}");
}

#[test]
fn map_selector_override_mode_with_star_rules_and_shards() {
    common::needs_services!();
    let repo = RepoServer::start(REPO);

    // A: a catch-all "*" rule. Only the shard topics a line can reach must exist: s-shard3's
    // explicit rule keeps it off its shard topic, which is not created.
    let a = Job::new(2);
    create_topic(&shard(&a, 2), 2);
    a.config(
        r#"{"stream_ids":{"s1":["x1","*","c1","x1"],"s-explicit":"x2","s-off":[],"s-shard":"*",
            "s-shard3":["x4"],"*":"*"},"connections_filter":false,"batch_size":3}"#,
    );
    let (base, sh2) = (a.topic.clone(), shard(&a, 2));
    let line = |i: usize, s: &str| event(i, s, CREATED);
    let lines_a: Vec<(String, Option<Sent>)> = [
        // Override: the rule's ids, "*" standing for the repository's, deduplicated, in order.
        (line(1, "s1"), Some((&base, "x1,c1,c3"))),
        // Explicit ids for a stream the repository does not know.
        (line(2, "s-explicit"), Some((&base, "x2"))),
        // An empty rule skips its stream.
        (line(3, "s-off"), None),
        // "*" sends a sharded stream to its shard topic.
        (line(4, "s-shard"), Some((&sh2, "c4"))),
        // Explicit ids send a sharded stream to the destinations topic.
        (line(5, "s-shard3"), Some((&base, "x4"))),
        // The catch-all: the repository's ids, browser-side destinations left out.
        (line(6, "s-other"), Some((&base, "c5"))),
        // The catch-all on a stream with only browser-side destinations: no ids, skipped.
        (line(7, "s-browser"), None),
        // The catch-all on a stream the repository does not know: no ids, skipped.
        (line(8, "nobody"), None),
        // Slug only (sourceId empty or absent): the rule and the repository entry by slug.
        (r#"{"messageId":"slug-s1","origin":{"sourceId":"","slug":"s1"}}"#.into(), Some((&base, "x1,c1,c3"))),
        (r#"{"messageId":"slug-shard","origin":{"slug":"s-shard"}}"#.into(), Some((&sh2, "c4"))),
        (r#"{"messageId":"slug-other","origin":{"sourceId":"","slug":"s-other"}}"#.into(), Some((&base, "c5"))),
        // The id's rule wins over the slug's; the slug's rule over "*".
        (r#"{"messageId":"id-wins","origin":{"sourceId":"s-explicit","slug":"s1"}}"#.into(), Some((&base, "x2"))),
        (r#"{"messageId":"by-slug","origin":{"sourceId":"unlisted","slug":"s-explicit"}}"#.into(), Some((&base, "x2"))),
        // No origin object: skipped.
        (r#"{"messageId":"str-origin","origin":"s1"}"#.into(), None),
        (r#"{"messageId":"no-origin","type":"track"}"#.into(), None),
        (line(16, "s-shard"), Some((&sh2, "c4"))),
        (line(17, "s1"), Some((&base, "x1,c1,c3"))),
    ]
    .into_iter()
    .map(|(l, t): (String, Option<(&String, &str)>)| {
        let s = t.map(|(topic, ids)| sent(topic, ids, &l));
        (l, s)
    })
    .collect();
    let (want_a, skipped_a) = one_file(&a, &lines_a);

    // B: no "*" key; a stream with no rule is skipped.
    const CROSS: &str = r#"{"messageId":"b-cross","origin":{"sourceId":"s-shard","slug":"s1"}}"#;
    let b = Job::new(1);
    create_topic(&shard(&b, 2), 1);
    create_topic(&shard(&b, 3), 1);
    b.config(r#"{"stream_ids":{"s1":"*","s-ghost":"*"}}"#);
    let lines_b = vec![
        (line(1, "s1"), Some(sent(&b.topic, "c1,c3", &line(1, "s1")))),
        // "*" for a stream the repository does not know: skipped.
        (line(2, "s-ghost"), None),
        // Known to the repository, but no rule and no "*" key: skipped.
        (line(3, "s-other"), None),
        (line(4, "s-shard"), None),
        (r#"{"messageId":"b-slug","origin":{"slug":"s-other"}}"#.to_string(), None),
        // The rule by slug, the repository's ids by sourceId: s-shard's, on its shard topic.
        (CROSS.to_string(), Some(sent(&shard(&b, 2), "c4", CROSS))),
    ];
    let (want_b, skipped_b) = one_file(&b, &lines_b);

    let out = run_with_repo(&a, &repo);
    assert_success(&out);
    assert_success(&run_with_repo(&b, &repo));
    assert!(repo.hits() >= 2, "the repository was fetched by both runs: {}", repo.hits());

    assert_eq!(delivered(&[&base, &sh2]), want_a, "nothing needs the shard3 topic, which does not exist");
    assert_completed(&a, 0, want_a.len() as u64, skipped_a);
    assert_eq!(delivered(&[&b.topic, &shard(&b, 2), &shard(&b, 3)]), want_b);
    assert_completed(&b, 0, want_b.len() as u64, skipped_b);
}

#[test]
fn map_selector_filter_mode_picks_among_the_repository_ids() {
    common::needs_services!();
    let repo = RepoServer::start(REPO);
    let job = Job::new(2);
    let (base, sh2, sh3) = (job.topic.clone(), shard(&job, 2), shard(&job, 3));
    create_topic(&sh2, 1);
    create_topic(&sh3, 1);
    job.config(
        r#"{"stream_ids":{"s1":["c3","zz","c1","c2"],"s-shard":"*","s-browser":"*","s-other":["c6"],
            "*":["c9","c5"]},"connections_filter":true}"#,
    );
    let line = |i: usize, s: &str| event(i, s, CREATED);
    let lines: Vec<(String, Option<Sent>)> = [
        // The repository's ids that the rule names, in the repository's order; c2 is browser-side.
        (line(1, "s1"), Some((&base, "c1,c3"))),
        // "*" keeps all of them, on the stream's shard topic.
        (line(2, "s-shard"), Some((&sh2, "c4"))),
        // Only browser-side destinations: nothing to keep.
        (line(3, "s-browser"), None),
        // The rule names only a browser-side destination: nothing to keep.
        (line(4, "s-other"), None),
        // The catch-all in filter mode: c9 of [c9, c5], on the stream's shard topic.
        (line(5, "s-shard3"), Some((&sh3, "c9"))),
        // Unknown to the repository: nothing to filter.
        (line(6, "nobody"), None),
        (r#"{"messageId":"f-slug","origin":{"sourceId":"","slug":"s-shard"}}"#.into(), Some((&sh2, "c4"))),
        (r#"{"messageId":"f-slug-s1","origin":{"slug":"s1"}}"#.into(), Some((&base, "c1,c3"))),
        (r#"{"messageId":"f-str","origin":"s1"}"#.into(), None),
        (line(10, "s1"), Some((&base, "c1,c3"))),
    ]
    .into_iter()
    .map(|(l, t): (String, Option<(&String, &str)>)| {
        let s = t.map(|(topic, ids)| sent(topic, ids, &l));
        (l, s)
    })
    .collect();
    let (want, skipped) = one_file(&job, &lines);
    assert_success(&run_with_repo(&job, &repo));
    assert!(repo.hits() >= 1, "filter mode needs the repository");
    assert_eq!(delivered(&[&base, &sh2, &sh3]), want);
    assert_completed(&job, 0, want.len() as u64, skipped);
}

#[test]
fn map_selector_of_explicit_ids_needs_no_repository() {
    common::needs_services!();
    let repo = RepoServer::start(REPO);
    let line = |i: usize, s: &str| event(i, s, CREATED);
    let input = |job: &Job, ids: [Option<&str>; 7]| -> (Vec<Sent>, u64) {
        let lines = [
            line(1, "s1"),
            line(2, "s-shard"),
            line(3, "s-off"),
            line(4, "anything"),
            r#"{"messageId":"e-slug","origin":{"slug":"s1"}}"#.to_string(),
            r#"{"messageId":"e-str","origin":"s1"}"#.to_string(),
            r#"{"messageId":"e-none"}"#.to_string(),
        ];
        let lines: Vec<(String, Option<Sent>)> =
            lines.into_iter().zip(ids).map(|(l, h)| (l.clone(), h.map(|h| sent(&job.topic, h, &l)))).collect();
        one_file(job, &lines)
    };
    // A: no REPOSITORY_URL at all; repeated ids once; "*" key with explicit ids; null rule.
    let a = Job::new(2);
    a.config(r#"{"stream_ids":{"s1":["a","b","a"],"s-shard":"x","s-off":null,"*":["d"]},"connections_filter":false}"#);
    let want_a = input(&a, [Some("a,b"), Some("x"), None, Some("d"), Some("a,b"), None, None]);
    // B: REPOSITORY_URL set, never asked; no "*" key: a stream with no rule is skipped.
    let b = Job::new(1);
    b.config(r#"{"stream_ids":{"s1":["a","b"],"s-shard":"x"}}"#);
    let want_b = input(&b, [Some("a,b"), Some("x"), None, None, Some("a,b"), None, None]);
    // C: an empty map selects nothing.
    let c = Job::new(1);
    c.config(r#"{"stream_ids":{}}"#);
    let want_c = input(&c, [None; 7]);
    // D: an empty list selects nothing either.
    let d = Job::new(1);
    d.config(r#"{"stream_ids":[],"connection_ids":["c"]}"#);
    let want_d = input(&d, [None; 7]);

    let children: Vec<_> = [
        a.command(0, 1).stderr(Stdio::piped()).spawn().unwrap(),
        b.command(0, 1).env("REPOSITORY_URL", repo.url()).stderr(Stdio::piped()).spawn().unwrap(),
        c.command(0, 1).env("REPOSITORY_URL", repo.url()).stderr(Stdio::piped()).spawn().unwrap(),
        d.command(0, 1).env("REPOSITORY_URL", repo.url()).stderr(Stdio::piped()).spawn().unwrap(),
    ]
    .into_iter()
    .collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    assert_eq!(repo.hits(), 0, "explicit ids never fetch the repository");
    for (job, (want, skipped)) in [(&a, want_a), (&b, want_b), (&c, want_c), (&d, want_d)] {
        assert_eq!(delivered(&[&job.topic]), want, "job {}", job.id);
        assert_completed(job, 0, want.len() as u64, skipped);
    }
}

#[test]
fn connection_ids_with_a_map_selector_is_a_configuration_error() {
    common::needs_services!();
    let repo = RepoServer::start(REPO);
    let job = Job::new(1);
    job.config(r#"{"stream_ids":{"s1":["c1"],"*":"*"},"connection_ids":["c2"]}"#);
    let body: String = (0..5).map(|i| event(i, "s1", CREATED) + "\n").collect();
    let p = job.write("f.ndjson", body.as_bytes());
    job.files(&[(p, body.len() as u64)]);
    let out = run_with_repo(&job, &repo);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let log = stderr(&out);
    let line = log.lines().find(|l| l.contains("configuration error")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("connection_ids") && line.contains("stream_ids"), "{line}");
    assert!(consume(&job.topic).is_empty(), "nothing is sent");
    assert_eq!(repo.hits(), 0, "the repository is not fetched for a rejected config");
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "failed");
    assert!(r["error"].contains("connection_ids") && r["error"].contains("stream_ids"), "{r:?}");
}

#[test]
fn events_filter_by_type_or_track_event_name() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"],"events":[" page ","","Signed Up","  ","e3"]}"#);
    let pass = |l: &str| (l.to_string(), Some(sent(&job.topic, "c", l)));
    let skip = |l: &str| (l.to_string(), None);
    let lines = vec![
        // The top-level type, listed trimmed.
        pass(r#"{"messageId":"ev-page","type":"page","origin":{"sourceId":"s"}}"#),
        pass(r#"{"messageId":"ev-page2","type":"page","httpPayload":{"event":"whatever"}}"#),
        // track, by httpPayload.event.
        pass(r#"{"messageId":"ev-signed","type":"track","httpPayload":{"type":"track","event":"Signed Up"}}"#),
        pass(&event(3, "s", CREATED)),
        skip(&event(4, "s", CREATED)),
        skip(r#"{"messageId":"ev-login","type":"track","httpPayload":{"event":"Logged In"}}"#),
        // The event name counts only for track.
        skip(r#"{"messageId":"ev-identify","type":"identify","httpPayload":{"event":"Signed Up"}}"#),
        skip(r#"{"messageId":"ev-track-bare","type":"track"}"#),
        // The line's type is not trimmed, nor case-folded; empty entries were dropped.
        skip(r#"{"messageId":"ev-spaced","type":" page "}"#),
        skip(r#"{"messageId":"ev-Page","type":"Page"}"#),
        skip(r#"{"messageId":"ev-empty","type":""}"#),
        skip(r#"{"messageId":"ev-notype","httpPayload":{"event":"page"}}"#),
    ];
    let (want, skipped) = one_file(&job, &lines);
    assert_eq!((want.len(), skipped), (4, 8));
    assert_success(&job.run(0, 1));
    assert_eq!(delivered(&[&job.topic]), want);
    assert_completed(&job, 0, 4, 8);
}

#[test]
fn admin_written_config_and_gzipped_files_list_two_workers() {
    common::needs_services!();
    let repo = RepoServer::start(REPO);
    let job = Job::new(2);
    let (base, sh2, sh3) = (job.topic.clone(), shard(&job, 2), shard(&job, 3));
    create_topic(&sh2, 1);
    create_topic(&sh3, 1);
    // Exactly as the admin writes it, Go zero values and all.
    job.config(concat!(
        r#"{"s3_path":"","gcs_path":"gs://b/p/","local_path":"","files":null,"#,
        r#""stream_ids":{"s1":["c1","c2"],"s-other":"*","*":["*","x9"]},"connections_filter":false,"#,
        r#""connection_ids":null,"events":["track"," page "],"#,
        r#""date_from":"0001-01-01T00:00:00Z","date_to":"0001-01-01T00:00:00Z","batch_size":0,"#,
        r#""retry_attempts":0,"dry_run":false,"start_file":"","start_line":0,"limit":0,"parallel_workers":2}"#
    ));
    let mut want: Vec<Vec<Sent>> = vec![Vec::new(), Vec::new()];
    let mut skipped = [0u64; 2];
    let mut entries = Vec::new();
    let mut sizes = [0u64; 2];
    for k in 0..4usize {
        let mut body = String::new();
        for j in 0..40 {
            let i = k * 1000 + j;
            let (l, to) = match j % 6 {
                0 => (event(i, "s1", CREATED), Some((&base, "c1,c2"))),
                1 => (event(i, "s-other", CREATED), Some((&base, "c5"))),
                2 => (event(i, "s-shard", CREATED), Some((&sh2, "c4,x9"))),
                3 => (
                    format!(r#"{{"messageId":"p-{i}","type":"page","origin":{{"sourceId":"nobody"}}}}"#),
                    Some((&base, "x9")),
                ),
                4 => (format!(r#"{{"messageId":"i-{i}","type":"identify","origin":{{"sourceId":"s1"}}}}"#), None),
                _ => (event(i, "s-browser", CREATED), Some((&base, "x9"))),
            };
            match to {
                Some((topic, ids)) => want[k % 2].push(sent(topic, ids, &l)),
                None => skipped[k % 2] += 1,
            }
            body += &l;
            body += "\n";
        }
        let (name, bytes) = if k % 2 == 1 {
            (format!("part-{k}.ndjson.gz"), gzip(body.as_bytes()))
        } else {
            (format!("part-{k}.ndjson"), body.into_bytes())
        };
        let path = job.write(&name, &bytes);
        sizes[k % 2] += bytes.len() as u64;
        entries.push(format!(r#"{{"path":"{path}","size":{},"last_modified":"2024-05-01T10:00:0{k}Z"}}"#, bytes.len()));
    }
    job.write("files.json", &gzip(format!("[{}]", entries.join(",")).as_bytes()));
    let children: Vec<_> = (0..2)
        .map(|i| job.command(i, 2).env("REPOSITORY_URL", repo.url()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    assert!(repo.hits() >= 2, "each worker fetched the repository: {}", repo.hits());
    let all: Vec<Sent> = want.iter().flatten().cloned().collect();
    assert_eq!(delivered(&[&base, &sh2, &sh3]), sorted_sent(all));
    for w in 0..2 {
        let r = row(&job.id, w as i32);
        assert_eq!(r["status"], "completed", "{r:?}");
        assert_counts(&r, want[w].len() as u64, 0, skipped[w]);
        assert_eq!((num(&r, "assigned_files"), num(&r, "processed_files")), (2, 2), "{r:?}");
        assert_eq!((num(&r, "total_bytes"), num(&r, "processed_bytes")), (sizes[w], sizes[w]), "{r:?}");
    }
}

#[test]
fn files_passed_over_by_start_file_count_as_processed() {
    common::needs_services!();
    let mk = |job: &Job, n: usize| -> Vec<(String, Vec<String>, u64)> {
        (0..n)
            .map(|k| {
                let lines: Vec<String> = (0..10).map(|i| event(k * 100 + i, "s", CREATED)).collect();
                let body = lines.join("\n") + "\n";
                (job.write(&format!("f{k}.ndjson"), body.as_bytes()), lines, body.len() as u64)
            })
            .collect()
    };
    // One worker, three files, starting at the second (by its full path).
    let one = Job::new(1);
    let f1 = mk(&one, 3);
    one.files(&f1.iter().map(|(p, _, s)| (p.clone(), *s)).collect::<Vec<_>>());
    one.config(&format!(r#"{{"connection_ids":["c"],"start_file":"{}"}}"#, f1[1].0));
    // Two workers, four files, starting at the third (by base name) after its line 3: worker
    // 0 (f0, f2) passes over f0, worker 1 (f1, f3) passes over f1.
    let two = Job::new(1);
    let f2 = mk(&two, 4);
    two.files(&f2.iter().map(|(p, _, s)| (p.clone(), *s)).collect::<Vec<_>>());
    two.config(r#"{"connection_ids":["c"],"start_file":"f2.ndjson","start_line":3}"#);

    let children: Vec<_> = [
        one.command(0, 1).stderr(Stdio::piped()).spawn().unwrap(),
        two.command(0, 2).stderr(Stdio::piped()).spawn().unwrap(),
        two.command(1, 2).stderr(Stdio::piped()).spawn().unwrap(),
    ]
    .into_iter()
    .collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }

    let want: Vec<Sent> = f1[1].1.iter().chain(&f1[2].1).map(|l| sent(&one.topic, "c", l)).collect();
    assert_eq!(delivered(&[&one.topic]), sorted_sent(want));
    let r = row(&one.id, 0);
    assert_eq!(r["status"], "completed", "{r:?}");
    assert_counts(&r, 20, 0, 0);
    assert_eq!((num(&r, "assigned_files"), num(&r, "processed_files")), (3, 3), "{r:?}");
    let total: u64 = f1.iter().map(|f| f.2).sum();
    assert_eq!((num(&r, "total_bytes"), num(&r, "processed_bytes")), (total, total), "{r:?}");
    assert_eq!(r["current_file"], f1[2].0);

    let want: Vec<Sent> = f2[2].1[3..].iter().chain(&f2[3].1).map(|l| sent(&two.topic, "c", l)).collect();
    assert_eq!(delivered(&[&two.topic]), sorted_sent(want));
    for (w, success) in [(0, 7), (1, 10)] {
        let r = row(&two.id, w);
        assert_eq!(r["status"], "completed", "{r:?}");
        assert_counts(&r, success, 0, 0);
        assert_eq!((num(&r, "assigned_files"), num(&r, "processed_files")), (2, 2), "{r:?}");
        assert_eq!(num(&r, "processed_bytes"), num(&r, "total_bytes"), "{r:?}");
    }
}

#[test]
fn a_failed_file_is_in_the_row_while_the_worker_still_runs() {
    common::needs_services!();
    let job = Job::new(1);
    job.config(r#"{"connection_ids":["c"],"retry_attempts":1,"batch_size":50}"#);
    let missing = format!("/nonexistent/{}/missing.ndjson", unique("dir"));
    let lines: Vec<String> = (0..1500).map(|i| event(i, "s", CREATED)).collect();
    let body = lines.join("\n") + "\n";
    let p = job.write("big.ndjson", body.as_bytes());
    job.files(&[(missing.clone(), 100), (p, body.len() as u64)]);
    let log = std::fs::File::create(job.path("worker.log")).unwrap();
    let mut child = job.command(0, 1).env("MAX_EVENTS_PER_SEC", "300").stderr(log).spawn().unwrap();
    let start = Instant::now();
    let mut seen = None;
    while start.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
        if let Some(r) = try_row(&job.id, 0) {
            if r.get("status").map(String::as_str) == Some("running") && r.get("error").is_some_and(|e| !e.is_empty()) {
                seen = Some(r);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let log = read_to_string(&job.path("worker.log"));
    let live =
        seen.unwrap_or_else(|| panic!("no error in the row while running; final {:?}\n{log}", try_row(&job.id, 0)));
    assert!(live["error"].contains(&missing), "the error names the missing file: {live:?}");
    assert!(num(&live, "total_lines") < 1500, "seen before the run ended: {live:?}");
    assert!(status.success(), "{log}");
    assert_eq!(delivered(&[&job.topic]), sorted_sent(lines.iter().map(|l| sent(&job.topic, "c", l)).collect()));
    let r = row(&job.id, 0);
    assert_eq!(r["status"], "completed", "{r:?}");
    assert_counts(&r, 1500, 0, 0);
    assert_eq!((num(&r, "assigned_files"), num(&r, "processed_files")), (2, 2), "{r:?}");
    assert!(r["error"].contains(&missing), "{r:?}");
}
