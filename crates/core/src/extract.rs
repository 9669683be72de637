//! Validates one line as a single JSON object and reads the four fields routing needs:
//! `messageId`, `messageCreated`, `origin.sourceId` and `origin.slug`; and, only for a job
//! with an `events` filter, `type` and `httpPayload.event`.
//!
//! The whole line is validated in the same pass that extracts the fields (sonic-rs's
//! validating skip for every other value), so invalid JSON — trailing bytes, `NaN`, a
//! truncated object, invalid UTF-8, a top-level value that is not an object — is an error
//! and is never forwarded. Nothing is allocated unless a wanted string has escapes.
//!
//! sonic-rs does not check the escapes of the strings it skips (`"\\q"`, `"\\u12xz"` pass),
//! so every backslash of the line is checked here, in one `memchr` pass: it must start one of
//! JSON's escapes. A line without a backslash costs one scan.
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
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Deepest accepted nesting of objects and arrays. Go's `encoding/json` allows 10,000; real
/// events nest a few levels, and 1,000 keeps the parser's recursion within a small stack.
pub(crate) const MAX_DEPTH: usize = 1_000;

/// Stack a thread that parses lines needs, in bytes: room for JSON nested to `MAX_DEPTH`.
pub const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The fields of one event that the worker reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The top-level `messageId`; `None` when absent or not a string.
    pub message_id: Option<Cow<'a, str>>,
    /// The top-level `messageCreated`, as written; `None` when absent or not a string.
    pub message_created: Option<Cow<'a, str>>,
    /// `Some` when `origin` is an object.
    pub origin: Option<Origin<'a>>,
    /// The top-level `type`; read only with [`Fields::WithEvent`].
    pub event_type: Option<Cow<'a, str>>,
    /// `httpPayload.event`; read only with [`Fields::WithEvent`].
    pub event_name: Option<Cow<'a, str>>,
}

/// The fields of an event's `origin` object that routing reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `origin.sourceId`; `None` when absent or not a string.
    pub source_id: Option<Cow<'a, str>>,
    /// `origin.slug`; `None` when absent or not a string.
    pub slug: Option<Cow<'a, str>>,
}

/// Why a line is not one valid JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Objects and arrays nest deeper than `MAX_DEPTH`.
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not valid JSON, or not an object: the parser's message (its first line), or the byte
    /// position of an invalid escape.
    #[error("invalid JSON: {0}")]
    Invalid(String),
}

/// Parses and validates `line`, reading the routing fields.
pub fn extract(line: &[u8]) -> Result<Envelope<'_>, ExtractError> {
    extract_with(line, Fields::Routing)
}

/// Parses and validates `line`, reading `fields`.
pub fn extract_with(line: &[u8], fields: Fields) -> Result<Envelope<'_>, ExtractError> {
    if bracket_count_exceeds(line, MAX_DEPTH) && max_depth(line) > MAX_DEPTH {
        return Err(ExtractError::TooDeep);
    }
    let parsed = match fields {
        Fields::Routing => sonic_rs::from_slice::<Envelope<'_>>(line),
        Fields::WithEvent => sonic_rs::from_slice::<WithEvent<'_>>(line).map(|w| w.0),
    };
    let envelope = parsed.map_err(|e| ExtractError::Invalid(crate::error::first_line(&e.to_string()).to_owned()))?;
    match bad_escape(line) {
        Some(at) => Err(ExtractError::Invalid(format!("invalid escape at byte {at}"))),
        None => Ok(envelope),
    }
}

/// The position of the first backslash that does not start one of JSON's escapes (`\"`,
/// `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u` and four hex digits). Backslashes are
/// only valid inside strings, which the parser has already checked the line for; taking the
/// escapes in order, an escaped backslash is never mistaken for the start of another escape.
fn bad_escape(line: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\\', &line[from..]) {
        let at = from + i;
        from = match line.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at + 2,
            Some(b'u') if line.get(at + 2..at + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => at + 6,
            _ => return Some(at),
        };
    }
    None
}

/// Which fields [`extract_with`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fields {
    /// The four routing fields.
    #[default]
    Routing,
    /// Those and the two the `events` filter reads.
    WithEvent,
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

/// The visitor arms for every JSON value but `kind`, each yielding "absent" (the value is
/// still validated).
macro_rules! absent_unless {
    (str) => {
        absent_unless!(@scalars);
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
    (map) => {
        absent_unless!(@scalars);
        fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
    (@scalars) => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

/// A string value, or `None` for any other JSON value (which is still validated).
#[derive(Default)]
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            absent_unless!(str);
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v))))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object's key: borrowed from the line unless it has escapes. (serde's own `Cow<str>`
/// always allocates: it deserializes into a `String`.)
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The string fields of an object that [`MaybeObject`] picks.
trait Picks<const N: usize> {
    const NAMES: [&'static str; N];
}

struct OriginFields;
impl Picks<2> for OriginFields {
    const NAMES: [&'static str; 2] = ["sourceId", "slug"];
}

struct PayloadFields;
impl Picks<1> for PayloadFields {
    const NAMES: [&'static str; 1] = ["event"];
}

/// An object yields the string fields `F` names; anything else is validated and yields `None`.
struct MaybeObject<'a, F, const N: usize>(Option<[Option<Cow<'a, str>>; N]>, PhantomData<F>);

impl<F, const N: usize> Default for MaybeObject<'_, F, N> {
    fn default() -> Self {
        Self(None, PhantomData)
    }
}

impl<'de, F: Picks<N>, const N: usize> de::Deserialize<'de> for MaybeObject<'de, F, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<F, const N: usize>(PhantomData<F>);
        impl<'de, F: Picks<N>, const N: usize> Visitor<'de> for V<F, N> {
            type Value = MaybeObject<'de, F, N>;
            absent_unless!(map);
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut picked: [Option<Cow<'de, str>>; N] = std::array::from_fn(|_| None);
                while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
                    match F::NAMES.iter().position(|n| *n == key) {
                        Some(i) => picked[i] = map.next_value::<MaybeStr<'de>>()?.0,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(MaybeObject(Some(picked), PhantomData))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The top-level visitor; with `EVENT` it also reads `type` and `httpPayload.event`.
struct EnvelopeVisitor<const EVENT: bool>;

impl<'de, const EVENT: bool> Visitor<'de> for EnvelopeVisitor<EVENT> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = Envelope::default();
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            match key.as_ref() {
                "messageId" => env.message_id = map.next_value::<MaybeStr<'de>>()?.0,
                "messageCreated" => env.message_created = map.next_value::<MaybeStr<'de>>()?.0,
                "origin" => {
                    env.origin = map
                        .next_value::<MaybeObject<'de, OriginFields, 2>>()?
                        .0
                        .map(|[source_id, slug]| Origin { source_id, slug })
                }
                "type" if EVENT => env.event_type = map.next_value::<MaybeStr<'de>>()?.0,
                "httpPayload" if EVENT => {
                    env.event_name = map.next_value::<MaybeObject<'de, PayloadFields, 1>>()?.0.and_then(|[e]| e)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

impl<'de> de::Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor::<false>)
    }
}

/// An [`Envelope`] with the event fields read too.
struct WithEvent<'a>(Envelope<'a>);

impl<'de> de::Deserialize<'de> for WithEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor::<true>).map(WithEvent)
    }
}

#[cfg(test)]
mod tests;
