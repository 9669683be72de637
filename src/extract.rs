//! Validates one line as a single JSON object and reads the four fields routing needs:
//! `messageId`, `messageCreated`, `origin.sourceId` and `origin.slug`.
//!
//! The whole line is validated in the same pass that extracts the fields (sonic-rs's
//! validating skip for every other value), so invalid JSON — trailing bytes, `NaN`, a
//! truncated object, invalid UTF-8, a top-level value that is not an object — is an error
//! and is never forwarded. Nothing is allocated unless a wanted string has escapes.
//!
//! Nesting is bounded by [`MAX_DEPTH`] before the parser runs:
//! sonic-rs skips ignored values recursively, so a line nested 100,000 levels deep would
//! otherwise overflow the stack. A cheap count of `{` and `[` bytes proves most lines shallow;
//! only lines with more brackets than the limit get the exact, string-aware depth scan.
//!
//! Types are lenient where the original is: a non-string `messageId` or `messageCreated` and
//! a non-object `origin` are treated as absent, not as errors. A repeated key keeps its last
//! value, as Go's decoder does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Deepest accepted nesting of objects and arrays. Go's `encoding/json` allows 10,000; real
/// events nest a few levels, and 1,000 keeps the parser's recursion within a small stack.
pub const MAX_DEPTH: usize = 1_000;

/// The fields of one event that the worker reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub message_id: Option<Cow<'a, str>>,
    pub message_created: Option<Cow<'a, str>>,
    /// `Some` when `origin` is an object.
    pub origin: Option<Origin<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    pub source_id: Option<Cow<'a, str>>,
    pub slug: Option<Cow<'a, str>>,
}

/// Why a line is not one valid JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("invalid JSON: {0}")]
    Invalid(String),
}

/// Parses and validates `line`.
pub fn extract(line: &[u8]) -> Result<Envelope<'_>, ExtractError> {
    if bracket_count_exceeds(line, MAX_DEPTH) && max_depth(line) > MAX_DEPTH {
        return Err(ExtractError::TooDeep);
    }
    sonic_rs::from_slice::<Envelope<'_>>(line)
        .map_err(|e| ExtractError::Invalid(crate::jobfile::first_line(&e.to_string()).to_owned()))
}

/// True when `line` has more than `limit` opening brackets: only then can it nest deeper.
fn bracket_count_exceeds(line: &[u8], limit: usize) -> bool {
    // memchr's SIMD search: >10 GB/s on event lines, which hold a few dozen brackets.
    memchr::memchr2_iter(b'{', b'[', line).nth(limit).is_some()
}

/// The deepest nesting of `{`/`[` outside strings. Handles escapes; ignores validity.
fn max_depth(line: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in line {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A string value, or `None` for any other JSON value (which is still validated).
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// `origin`: an object yields its two fields; anything else is validated and yields `None`.
struct MaybeOrigin<'a>(Option<Origin<'a>>);

impl<'de> de::Deserialize<'de> for MaybeOrigin<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeOrigin<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut o = Origin::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "sourceId" => o.source_id = map.next_value::<MaybeStr<'de>>()?.0,
                        "slug" => o.slug = map.next_value::<MaybeStr<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(MaybeOrigin(Some(o)))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeOrigin(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeOrigin(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut env = Envelope::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "messageId" => env.message_id = map.next_value::<MaybeStr<'de>>()?.0,
                        "messageCreated" => env.message_created = map.next_value::<MaybeStr<'de>>()?.0,
                        "origin" => env.origin = map.next_value::<MaybeOrigin<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests;
