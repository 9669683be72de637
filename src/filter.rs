//! The original worker's filters, as pure functions of the extracted fields.
//!
//! - **Streams.** With `stream_ids` set, a line passes only if `origin` is an object whose
//!   `sourceId` or `slug` is in the list.
//! - **Dates.** With `date_from`/`date_to` set, a `messageCreated` that parses as RFC 3339
//!   (any fraction up to nanoseconds, `Z` or an offset) before `date_from` or after `date_to`
//!   is skipped; both ends are inclusive. A missing or unparseable `messageCreated` passes.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};

use crate::extract::Envelope;

/// Why a line was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Empty or whitespace-only line.
    Blank,
    /// `origin` does not name one of the job's streams.
    Stream,
    /// `messageCreated` is outside the date window.
    Date,
}

/// The job's filters, built once from the config.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    streams: Option<HashSet<String>>,
    from: Option<DateTime<FixedOffset>>,
    to: Option<DateTime<FixedOffset>>,
}

impl Filter {
    pub fn new(stream_ids: &[String], from: Option<DateTime<FixedOffset>>, to: Option<DateTime<FixedOffset>>) -> Self {
        let streams = (!stream_ids.is_empty()).then(|| stream_ids.iter().cloned().collect());
        Self { streams, from, to }
    }

    /// `Ok(())` when the line passes, else the reason it is skipped.
    pub fn check(&self, env: &Envelope<'_>) -> Result<(), SkipReason> {
        if let Some(streams) = &self.streams {
            let origin = env.origin.as_ref().ok_or(SkipReason::Stream)?;
            let hit = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().is_some_and(|s| streams.contains(s));
            if !hit(&origin.source_id) && !hit(&origin.slug) {
                return Err(SkipReason::Stream);
            }
        }
        if self.from.is_some() || self.to.is_some() {
            if let Some(created) = env.message_created.as_deref().and_then(parse_time) {
                if self.from.is_some_and(|f| created < f) || self.to.is_some_and(|t| created > t) {
                    return Err(SkipReason::Date);
                }
            }
        }
        Ok(())
    }
}

/// RFC 3339 with any fraction (to nanoseconds) and `Z` or an offset; `None` if it is not one.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// True for a line that is empty or only ASCII whitespace.
#[inline]
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;

    fn t(s: &str) -> Option<DateTime<FixedOffset>> {
        Some(DateTime::parse_from_rfc3339(s).unwrap())
    }

    fn check(f: &Filter, line: &str) -> Result<(), SkipReason> {
        f.check(&extract(line.as_bytes()).unwrap())
    }

    #[test]
    fn stream_filter_table() {
        let f = Filter::new(&["s1".into(), "slug2".into()], None, None);
        let cases = [
            (r#"{"origin":{"sourceId":"s1"}}"#, Ok(())),
            (r#"{"origin":{"slug":"slug2"}}"#, Ok(())),
            (r#"{"origin":{"sourceId":"other","slug":"slug2"}}"#, Ok(())),
            (r#"{"origin":{"sourceId":"s1","slug":"x"}}"#, Ok(())),
            (r#"{"origin":{"sourceId":"other"}}"#, Err(SkipReason::Stream)),
            (r#"{"origin":{}}"#, Err(SkipReason::Stream)),
            (r#"{"origin":"s1"}"#, Err(SkipReason::Stream)),
            (r#"{"origin":null}"#, Err(SkipReason::Stream)),
            (r#"{"sourceId":"s1"}"#, Err(SkipReason::Stream)),
            (r#"{"origin":{"sourceId":"S1"}}"#, Err(SkipReason::Stream)),
        ];
        for (line, want) in cases {
            assert_eq!(check(&f, line), want, "{line}");
        }
        assert_eq!(check(&Filter::default(), r#"{"origin":"x"}"#), Ok(()));
    }

    #[test]
    fn date_window_table() {
        let f = Filter::new(&[], t("2024-01-01T00:00:00Z"), t("2024-01-31T23:59:59.999999999Z"));
        let cases = [
            ("2024-01-01T00:00:00Z", Ok(())),
            ("2023-12-31T23:59:59.999999999Z", Err(SkipReason::Date)),
            ("2024-01-31T23:59:59.999999999Z", Ok(())),
            ("2024-02-01T00:00:00Z", Err(SkipReason::Date)),
            ("2024-01-15T12:00:00.5+05:30", Ok(())),
            ("2024-01-01T01:00:00+02:00", Err(SkipReason::Date)),
            ("2024-01-31T23:00:00-01:00", Err(SkipReason::Date)),
            ("not a date", Ok(())),
            ("2024-01-15", Ok(())),
        ];
        for (created, want) in cases {
            let line = format!(r#"{{"messageCreated":"{created}"}}"#);
            assert_eq!(check(&f, &line), want, "{created}");
        }
        assert_eq!(check(&f, r#"{"messageCreated":12345}"#), Ok(()));
        assert_eq!(check(&f, r#"{}"#), Ok(()));
    }

    #[test]
    fn open_ended_windows() {
        let from_only = Filter::new(&[], t("2024-01-01T00:00:00Z"), None);
        assert_eq!(check(&from_only, r#"{"messageCreated":"2099-01-01T00:00:00Z"}"#), Ok(()));
        assert_eq!(check(&from_only, r#"{"messageCreated":"2000-01-01T00:00:00Z"}"#), Err(SkipReason::Date));
        let to_only = Filter::new(&[], None, t("2024-01-01T00:00:00Z"));
        assert_eq!(check(&to_only, r#"{"messageCreated":"2000-01-01T00:00:00Z"}"#), Ok(()));
        assert_eq!(check(&to_only, r#"{"messageCreated":"2024-01-01T00:00:00.000000001Z"}"#), Err(SkipReason::Date));
    }

    #[test]
    fn blank_lines() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t \r"));
        assert!(!is_blank(b" {} "));
    }
}
