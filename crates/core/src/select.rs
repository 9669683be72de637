//! The job's stream selector (`stream_ids` in `config.json`) and what a map rule resolves to.
//! Pure: values in, values out.
//!
//! | `stream_ids` | meaning |
//! |---|---|
//! | absent or `null` | every stream |
//! | `[]` or `{}` | no stream: every line is skipped |
//! | `["s1","s2"]` | only these streams (a filter; routing as without a selector) |
//! | `{"s1":["c1"],"s2":"c3","*":"*"}` | per-stream rules; the key `"*"` is every other stream |
//!
//! A map rule is a list of connection ids, where the id `"*"` stands for the ids the streams
//! repository maps the stream to (`mapped`). With `connections_filter` off (override) a rule
//! gives its ids with `"*"` replaced by `mapped`; with it on (filter) a rule gives the ids of
//! `mapped` that it names, all of them when it holds `"*"`. Either way duplicates are dropped
//! and the order is stable: the order of the rule, or of `mapped` in filter mode.

use std::collections::HashMap;

/// The id, in a map rule's value or as its key, that stands for "all".
pub(crate) const ANY: &str = "*";

/// `stream_ids`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StreamSelector {
    /// Absent or `null`: every stream.
    #[default]
    All,
    /// Only these streams; empty selects none.
    List(Vec<String>),
    /// Per-stream rules, in the config's order; empty selects none.
    Map(Vec<Rule>),
}

/// One entry of a map selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A stream id or slug, or `"*"` (`ANY`) for every stream not listed.
    pub stream: String,
    /// Connection ids; `"*"` (`ANY`) stands for the repository's ids of the stream.
    pub ids: Vec<String>,
}

/// What a map rule's ids mean (`connections_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleMode {
    /// `false`: the rule's ids replace the repository's; `"*"` adds them.
    #[default]
    Override,
    /// `true`: the rule picks among the repository's ids.
    Filter,
}

impl RuleMode {
    /// The mode `connections_filter` selects: `true` is [`RuleMode::Filter`].
    pub(crate) fn from_flag(connections_filter: bool) -> Self {
        if connections_filter {
            RuleMode::Filter
        } else {
            RuleMode::Override
        }
    }
}

impl Rule {
    /// True when this rule's result depends on the streams repository.
    pub(crate) fn uses_repository(&self, mode: RuleMode) -> bool {
        mode == RuleMode::Filter || self.ids.iter().any(|id| id == ANY)
    }

    /// The connection ids for a stream the repository maps to `mapped` (empty when the stream
    /// is unknown to it or the repository was not needed). Empty means the line is skipped.
    pub fn resolve<'a>(&'a self, mode: RuleMode, mapped: &'a [String]) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        let mut push = |id: &'a str| {
            if !out.contains(&id) {
                out.push(id);
            }
        };
        match mode {
            RuleMode::Override => {
                for id in &self.ids {
                    if id == ANY {
                        mapped.iter().for_each(|m| push(m));
                    } else {
                        push(id);
                    }
                }
            }
            RuleMode::Filter => {
                let all = self.ids.iter().any(|id| id == ANY);
                for m in mapped {
                    if all || self.ids.contains(m) {
                        push(m);
                    }
                }
            }
        }
        out
    }
}

impl StreamSelector {
    /// The rules of a map selector, else `None`.
    pub fn rules(&self) -> Option<&[Rule]> {
        match self {
            StreamSelector::Map(rules) => Some(rules),
            _ => None,
        }
    }

    /// True when routing needs the streams repository: a selector that is not a map routes by
    /// it unless the job lists `connection_ids`; a map needs it only for the rules that use it.
    pub fn needs_repository(&self, mode: RuleMode, has_connection_ids: bool) -> bool {
        match self {
            StreamSelector::Map(rules) => rules.iter().any(|r| r.uses_repository(mode)),
            _ => !has_connection_ids,
        }
    }
}

/// Finds a line's rule among a map selector's rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    by_stream: HashMap<String, usize>,
    any: Option<usize>,
}

impl RuleIndex {
    /// A stream listed twice takes its last rule, as a JSON object's repeated key does.
    pub(crate) fn new(rules: &[Rule]) -> Self {
        let mut index = Self::default();
        for (i, r) in rules.iter().enumerate() {
            if r.stream == ANY {
                index.any = Some(i);
            } else {
                index.by_stream.insert(r.stream.clone(), i);
            }
        }
        index
    }

    /// The rule listed for exactly this stream, not counting [`ANY`].
    pub(crate) fn own(&self, stream: &str) -> Option<usize> {
        self.by_stream.get(stream).copied()
    }

    /// The rule for a line whose origin has `id` and `slug` (either may be empty): looked up by
    /// id, then slug, then [`ANY`]; `None` when there is none.
    pub(crate) fn lookup(&self, id: &str, slug: &str) -> Option<usize> {
        let find = |name: &str| if name.is_empty() { None } else { self.by_stream.get(name).copied() };
        find(id).or_else(|| find(slug)).or(self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(stream: &str, ids: &[&str]) -> Rule {
        Rule { stream: stream.into(), ids: ids.iter().map(|s| s.to_string()).collect() }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn override_mode_table() {
        let mapped = strings(&["m1", "m2", "c1"]);
        let cases: [(&[&str], &[&str]); 7] = [
            (&["c1", "c2"], &["c1", "c2"]),
            (&["*"], &["m1", "m2", "c1"]),
            (&["c9", "*"], &["c9", "m1", "m2", "c1"]),
            (&["*", "c1", "c9"], &["m1", "m2", "c1", "c9"]),
            (&["c2", "c2", "*", "*"], &["c2", "m1", "m2", "c1"]),
            (&[], &[]),
            (&["c1"], &["c1"]),
        ];
        for (ids, want) in cases {
            assert_eq!(rule("s", ids).resolve(RuleMode::Override, &mapped), want, "{ids:?}");
        }
        // A stream the repository does not know: "*" adds nothing.
        assert_eq!(rule("s", &["*", "c1"]).resolve(RuleMode::Override, &[]), ["c1"]);
        assert!(rule("s", &["*"]).resolve(RuleMode::Override, &[]).is_empty());
    }

    #[test]
    fn filter_mode_table() {
        let mapped = strings(&["m1", "m2", "m3"]);
        let cases: [(&[&str], &[&str]); 6] = [
            (&["m2", "m1"], &["m1", "m2"]),
            (&["*"], &["m1", "m2", "m3"]),
            (&["x", "*"], &["m1", "m2", "m3"]),
            (&["x"], &[]),
            (&[], &[]),
            (&["m3", "m3"], &["m3"]),
        ];
        for (ids, want) in cases {
            assert_eq!(rule("s", ids).resolve(RuleMode::Filter, &mapped), want, "{ids:?}");
        }
        assert!(rule("s", &["*"]).resolve(RuleMode::Filter, &[]).is_empty());
    }

    #[test]
    fn rule_lookup_by_id_then_slug_then_any() {
        let index = RuleIndex::new(&[rule("s1", &["a"]), rule("slug2", &["b"]), rule("*", &["c"])]);
        assert_eq!(index.lookup("s1", ""), Some(0));
        assert_eq!(index.lookup("s1", "slug2"), Some(0), "the id wins over the slug");
        assert_eq!(index.lookup("other", "slug2"), Some(1), "the slug when the id has no rule");
        assert_eq!(index.lookup("", "slug2"), Some(1));
        assert_eq!(index.lookup("other", ""), Some(2), "everything else takes \"*\"");
        assert_eq!(index.lookup("", ""), Some(2));
        let no_default = RuleIndex::new(&[rule("s1", &["a"])]);
        assert_eq!(no_default.lookup("s2", "x"), None);
        assert_eq!(RuleIndex::new(&[]).lookup("s1", ""), None);
        let repeated = RuleIndex::new(&[rule("s1", &["a"]), rule("s1", &["b"])]);
        assert_eq!(repeated.lookup("s1", ""), Some(1), "the last rule for a stream wins");
    }

    #[test]
    fn the_repository_is_fetched_only_when_a_rule_needs_it() {
        let explicit = StreamSelector::Map(vec![rule("s1", &["a"]), rule("*", &["b"])]);
        let star = StreamSelector::Map(vec![rule("s1", &["a", "*"])]);
        let cases = [
            (&explicit, RuleMode::Override, false),
            (&explicit, RuleMode::Filter, true),
            (&star, RuleMode::Override, true),
            (&StreamSelector::Map(vec![]), RuleMode::Filter, false),
        ];
        for (sel, mode, want) in cases {
            assert_eq!(sel.needs_repository(mode, false), want, "{sel:?} {mode:?}");
        }
        assert!(StreamSelector::All.needs_repository(RuleMode::Override, false));
        assert!(!StreamSelector::All.needs_repository(RuleMode::Override, true));
        assert!(StreamSelector::List(strings(&["s"])).needs_repository(RuleMode::Filter, false));
        assert!(!StreamSelector::List(strings(&["s"])).needs_repository(RuleMode::Filter, true));
    }
}
