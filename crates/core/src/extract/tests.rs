//! Extraction tests: the fields, the lenient types, and every kind of invalid line.

use super::*;

fn s(v: &str) -> Option<Cow<'_, str>> {
    Some(Cow::Borrowed(v))
}

#[test]
fn reads_the_four_fields() {
    let line = br#"{"messageId":"m1","type":"track","messageCreated":"2024-05-01T10:00:00.123Z",
        "origin":{"baseUrl":"x","slug":"sl","sourceId":"src1","domain":null},"httpPayload":{"a":[1,2,{"b":"}"}]}}"#;
    let e = extract(line).unwrap();
    assert_eq!(e.message_id, s("m1"));
    assert_eq!(e.message_created, s("2024-05-01T10:00:00.123Z"));
    assert_eq!(e.origin, Some(Origin { source_id: s("src1"), slug: s("sl") }));
}

#[test]
fn escapes_are_decoded() {
    let e = extract(br#"{"messageId":"a\"b\u00e9","origin":{"sourceId":"s\/1"}}"#).unwrap();
    assert_eq!(e.message_id.as_deref(), Some("a\"bé"));
    assert_eq!(e.origin.unwrap().source_id.as_deref(), Some("s/1"));
}

#[test]
fn escaped_keys_name_the_same_fields() {
    let e = extract(br#"{"message\u0049d":"m1","\u006frigin":{"source\u0049d":"s1","sl\u0075g":"x"}}"#).unwrap();
    assert_eq!(e.message_id, s("m1"));
    assert_eq!(e.origin, Some(Origin { source_id: s("s1"), slug: s("x") }));
}

#[test]
fn lenient_types_are_absent() {
    let e = extract(br#"{"messageId":5,"messageCreated":{"x":[1]},"origin":"web"}"#).unwrap();
    assert_eq!(e, Envelope::default());
    let e = extract(br#"{"origin":[1,2]}"#).unwrap();
    assert_eq!(e.origin, None);
    let e = extract(br#"{"origin":{"sourceId":7,"slug":null}}"#).unwrap();
    assert_eq!(e.origin, Some(Origin::default()));
    assert_eq!(extract(b"{}").unwrap(), Envelope::default());
    assert_eq!(extract(b"  {}  ").unwrap(), Envelope::default());
}

#[test]
fn repeated_keys_keep_the_last_value() {
    let e = extract(br#"{"messageId":"a","messageId":"b"}"#).unwrap();
    assert_eq!(e.message_id, s("b"));
}

#[test]
fn invalid_lines_are_errors() {
    let cases: &[&[u8]] = &[
        b"",
        b"   ",
        b"[1,2]",
        b"\"str\"",
        b"42",
        b"null",
        b"{",
        br#"{"a":1"#,
        br#"{"a":1}x"#,
        br#"{"a":1} {"b":2}"#,
        br#"{"a":NaN}"#,
        br#"{"a":Infinity}"#,
        br#"{"a":01}"#,
        br#"{"a":1,}"#,
        br#"{'a':1}"#,
        br#"{"a":"unterminated}"#,
        br#"{"a":tru}"#,
        b"{\"a\":\"\xff\xfe\"}",
        b"{\"a\":\"x\x00y\"}",
        b"{\"a\":1}\x00",
        br#"{"origin":{"sourceId":"s","x":[1,}}"#,
        br#"{"messageId":"m","deep":{"a":[{"b":]}}}"#,
        // Escapes in strings the parser skips (found by the extract_filter fuzz target, whose
        // oracle is serde_json): sonic-rs lets them through.
        br#"{"a":[0,{"b":"\usourceId00e9"}]}"#,
        br#"{"a":"\q"}"#,
        br#"{"a":"\u12x4"}"#,
        br#"{"a":"x\"}"#,
        br#"{"messageId":"m\u00"}"#,
    ];
    for line in cases {
        assert!(extract(line).is_err(), "accepted {:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn every_json_escape_is_accepted_where_it_is_skipped_and_where_it_is_read() {
    let line = br#"{"messageId":"a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D\uDE00","x":"\\u","y":["\\\\","\u0041"]}"#;
    let e = extract(line).unwrap();
    assert_eq!(e.message_id.as_deref(), Some("a\"b\\c/d\u{8}\u{c}\n\r\té😀"));
}

#[test]
fn deep_nesting_is_bounded_without_overflowing_the_stack() {
    for depth in [100_000usize, MAX_DEPTH + 1] {
        let mut line = b"{\"a\":".to_vec();
        line.extend(std::iter::repeat_n(b'[', depth));
        line.extend(std::iter::repeat_n(b']', depth));
        line.push(b'}');
        assert_eq!(extract(&line), Err(ExtractError::TooDeep), "depth {depth}");
    }
    // Brackets inside strings do not count as nesting.
    let mut line = b"{\"messageId\":\"m\",\"s\":\"".to_vec();
    line.extend(std::iter::repeat_n(b'[', 50_000));
    line.extend(b"\"}");
    assert_eq!(extract(&line).unwrap().message_id, s("m"));
}

#[test]
fn nesting_at_the_limit_parses_on_a_worker_sized_stack() {
    // The CPU stage runs on a thread with PARSER_STACK_BYTES of stack; the limit must fit.
    let handle = std::thread::Builder::new()
        .stack_size(crate::extract::PARSER_STACK_BYTES)
        .spawn(|| {
            let depth = MAX_DEPTH - 1;
            let mut line = b"{\"a\":".to_vec();
            line.extend(std::iter::repeat_n(b'[', depth));
            line.extend(std::iter::repeat_n(b']', depth));
            line.push(b'}');
            extract(&line).is_ok()
        })
        .unwrap();
    assert!(handle.join().unwrap());
}

#[test]
fn depth_scan_handles_escapes() {
    assert_eq!(max_depth(br#"{"a":"\"[[[","b":[[1]]}"#), 3);
    assert_eq!(max_depth(br#"{"a":"\\","b":[1]}"#), 2);
}

#[test]
fn event_fields_are_read_only_when_asked() {
    let line = br#"{"type":"track","httpPayload":{"x":1,"event":"Signed Up"},"origin":{"sourceId":"s"}}"#;
    let plain = extract(line).unwrap();
    assert_eq!((plain.event_type, plain.event_name), (None, None));
    let e = extract_with(line, Fields::WithEvent).unwrap();
    assert_eq!((e.event_type, e.event_name), (s("track"), s("Signed Up")));
    assert_eq!(e.origin.unwrap().source_id, s("s"));
    let e = extract_with(br#"{"type":5,"httpPayload":"event"}"#, Fields::WithEvent).unwrap();
    assert_eq!((e.event_type, e.event_name), (None, None));
    let e = extract_with(br#"{"httpPayload":{"event":["a"]},"type":"page"}"#, Fields::WithEvent).unwrap();
    assert_eq!((e.event_type, e.event_name), (s("page"), None));
    // The same validation either way.
    assert!(extract_with(br#"{"type":"track","httpPayload":{"event":1,}}"#, Fields::WithEvent).is_err());
}
