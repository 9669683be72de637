//! Field extraction, the filters and routing (by the repository and by a map selector) on
//! arbitrary bytes: no panic, no stack overflow, the event fields change nothing about what is
//! valid, and a line accepted as valid is valid JSON for a second, independent parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rw_core::{extract, extract_with, parse_job_config, parse_time, Fields, Filter, Router, StreamSelector, Streams};

const REPO: &[u8] =
    br#"[{"stream":{"id":"s1"},"shard":2,"destinations":[{"id":"d","connectionId":"c","destinationType":"x"}]}]"#;

fuzz_target!(|data: &[u8]| {
    let list = StreamSelector::List(vec!["s1".into(), "slug".into()]);
    let filter = Filter::new(&list, parse_time("2024-01-01T00:00:00Z"), parse_time("2024-12-31T00:00:00Z"))
        .with_events(&["track".into(), "Signed Up".into()]);
    let streams = Streams::parse(REPO).unwrap();
    let router = Router::from_repository("t", REPO).unwrap();
    let job = parse_job_config(br#"{"stream_ids":{"s1":["x","*"],"slug":"y","*":"*"},"connections_filter":false}"#)
        .unwrap();
    let rules = Router::for_job("t", job.routing(), Some(&streams));
    let plain = extract(data);
    let with_event = extract_with(data, Fields::WithEvent);
    assert_eq!(plain.is_ok(), with_event.is_ok(), "the event fields change what is valid");
    if let Ok(env) = with_event {
        let _ = filter.check(&env);
        let _ = router.route(&env);
        let _ = rules.route(&env);
        if let Some(c) = env.message_created.as_deref() {
            let _ = parse_time(c);
        }
        assert!(std::str::from_utf8(data).is_ok(), "accepted invalid UTF-8");
        // The oracle: serde_json, a parser that shares no code with sonic-rs, must read the
        // accepted line as one JSON value (IgnoredAny checks the syntax only, so a number
        // beyond f64 is not an error here, as it is not for the worker, which never converts it).
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(data) {
            panic!("accepted a line serde_json rejects: {e}");
        }
    }
});
