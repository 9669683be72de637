//! The original worker's filters, as pure functions of the extracted fields.
//!
//! - **Streams.** With `stream_ids` a list, a line passes only if `origin` is an object whose
//!   `sourceId` or `slug` is in the list; an empty list passes nothing. (A map selector is
//!   applied by the router, which resolves its rules: see [`crate::route`].)
//! - **Events.** With `events` set, a line passes when its top-level `type` is listed, or when
//!   `type` is `"track"` and `httpPayload.event` is listed. Only then are those fields read.
//! - **Dates.** With `date_from`/`date_to` set, a `messageCreated` that parses as RFC 3339
//!   (any fraction up to nanoseconds, `Z` or an offset) before `date_from` or after `date_to`
//!   is skipped; both ends are inclusive. A missing or unparseable `messageCreated` passes.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};

use crate::extract::{Envelope, Fields};
use crate::select::StreamSelector;

/// Why a line was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Empty or whitespace-only line.
    Blank,
    /// `origin` does not name one of the job's streams, or its stream's rule gives no
    /// connection ids.
    Stream,
    /// Its event type is not one of the job's `events`.
    Event,
    /// `messageCreated` is outside the date window.
    Date,
}

/// The job's filters, built once from the config.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    streams: Option<HashSet<String>>,
    events: Option<HashSet<String>>,
    from: Option<DateTime<FixedOffset>>,
    to: Option<DateTime<FixedOffset>>,
}

/// The `type` whose events are also matched by their name, `httpPayload.event`.
pub(crate) const TRACK: &str = "track";

impl Filter {
    /// The stream filter of a `stream_ids` list (a map is applied by the router) and the date
    /// window; [`Filter::with_events`] adds the `events` filter.
    pub fn new(
        streams: &StreamSelector,
        from: Option<DateTime<FixedOffset>>,
        to: Option<DateTime<FixedOffset>>,
    ) -> Self {
        let streams = match streams {
            StreamSelector::List(ids) => Some(ids.iter().cloned().collect()),
            StreamSelector::All | StreamSelector::Map(_) => None,
        };
        Self { streams, events: None, from, to }
    }

    /// Adds the `events` filter; an empty list filters nothing.
    pub fn with_events(mut self, events: &[String]) -> Self {
        self.events = (!events.is_empty()).then(|| events.iter().cloned().collect());
        self
    }

    /// The fields [`Filter::check`] needs extracted.
    pub fn fields(&self) -> Fields {
        if self.events.is_some() {
            Fields::WithEvent
        } else {
            Fields::Routing
        }
    }

    /// `Ok(())` when the line passes, else the reason it is skipped.
    pub fn check(&self, env: &Envelope<'_>) -> Result<(), SkipReason> {
        if let Some(events) = &self.events {
            let listed = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().is_some_and(|s| events.contains(s));
            let track_named = env.event_type.as_deref() == Some(TRACK) && listed(&env.event_name);
            if !listed(&env.event_type) && !track_named {
                return Err(SkipReason::Event);
            }
        }
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
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract_with;

    fn t(s: &str) -> Option<DateTime<FixedOffset>> {
        Some(DateTime::parse_from_rfc3339(s).unwrap())
    }

    fn check(f: &Filter, line: &str) -> Result<(), SkipReason> {
        f.check(&extract_with(line.as_bytes(), f.fields()).unwrap())
    }

    fn list(ids: &[&str]) -> StreamSelector {
        StreamSelector::List(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn empty_list_and_map_selectors() {
        let none = Filter::new(&list(&[]), None, None);
        assert_eq!(check(&none, r#"{"origin":{"sourceId":"s1"}}"#), Err(SkipReason::Stream));
        assert_eq!(check(&none, r#"{}"#), Err(SkipReason::Stream));
        // A map is the router's to apply.
        let map = Filter::new(&StreamSelector::Map(vec![]), None, None);
        assert_eq!(check(&map, r#"{"origin":{"sourceId":"s1"}}"#), Ok(()));
    }

    #[test]
    fn event_filter_table() {
        let events = ["page".to_string(), "Signed Up".to_string()];
        let f = Filter::default().with_events(&events);
        assert_eq!(f.fields(), Fields::WithEvent);
        let cases = [
            (r#"{"type":"page"}"#, Ok(())),
            (r#"{"type":"track","httpPayload":{"event":"Signed Up"}}"#, Ok(())),
            (r#"{"type":"track","httpPayload":{"event":"Logged In"}}"#, Err(SkipReason::Event)),
            (r#"{"type":"track"}"#, Err(SkipReason::Event)),
            (r#"{"type":"identify","httpPayload":{"event":"Signed Up"}}"#, Err(SkipReason::Event)),
            (r#"{"type":"Page"}"#, Err(SkipReason::Event)),
            (r#"{"httpPayload":{"event":"page"}}"#, Err(SkipReason::Event)),
            (r#"{"type":["page"]}"#, Err(SkipReason::Event)),
            (r#"{}"#, Err(SkipReason::Event)),
        ];
        for (line, want) in cases {
            assert_eq!(check(&f, line), want, "{line}");
        }
        // "track" itself can be listed.
        let tracks = Filter::default().with_events(&["track".to_string()]);
        assert_eq!(check(&tracks, r#"{"type":"track","httpPayload":{"event":"x"}}"#), Ok(()));
        // An empty list filters nothing, and the event fields are not read.
        let none = Filter::default().with_events(&[]);
        assert_eq!(none.fields(), Fields::Routing);
        assert_eq!(check(&none, r#"{"type":"whatever"}"#), Ok(()));
    }

    #[test]
    fn stream_filter_table() {
        let f = Filter::new(&list(&["s1", "slug2"]), None, None);
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
        let f = Filter::new(&StreamSelector::All, t("2024-01-01T00:00:00Z"), t("2024-01-31T23:59:59.999999999Z"));
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
        let from_only = Filter::new(&StreamSelector::All, t("2024-01-01T00:00:00Z"), None);
        assert_eq!(check(&from_only, r#"{"messageCreated":"2099-01-01T00:00:00Z"}"#), Ok(()));
        assert_eq!(check(&from_only, r#"{"messageCreated":"2000-01-01T00:00:00Z"}"#), Err(SkipReason::Date));
        let to_only = Filter::new(&StreamSelector::All, None, t("2024-01-01T00:00:00Z"));
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
