//! Where a file lives: `s3://bucket/key`, `gs://bucket/object`, or a local path. Parsed once,
//! here, and shown back by its `Display`; the readers, the dead letters, `plan`'s listings, the
//! worker's clients and `start_file` use the parsed form. A listing or a dead-letter place is a
//! prefix ([`Location::parse_prefix`]): the key may be empty.

use std::path::PathBuf;

/// A file's place, parsed from its path in files.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An S3 object or prefix, `s3://bucket/key`.
    S3 {
        /// The bucket's name, never empty.
        bucket: String,
        /// The object's key; empty only for a prefix.
        key: String,
    },
    /// A Google Cloud Storage object or prefix, `gs://bucket/object`.
    Gcs {
        /// The bucket's name, never empty.
        bucket: String,
        /// The object's name; empty only for a prefix.
        object: String,
    },
    /// Any other path, on the local file system.
    Local(PathBuf),
}

/// An `s3://` or `gs://` path without a bucket or an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: expected {scheme}://bucket/{what}")]
pub struct BadLocation {
    /// The path as given.
    pub path: String,
    /// Its scheme: `s3` or `gs`.
    pub scheme: &'static str,
    what: &'static str,
}

impl Location {
    /// A file: an object needs its bucket and its key.
    pub fn parse(path: &str) -> Result<Self, BadLocation> {
        Self::parse_with(path, false)
    }

    /// A prefix to list or to write under (`s3://bucket`, `s3://bucket/dir/`): the key may be
    /// empty, and a trailing `/` is kept.
    pub fn parse_prefix(path: &str) -> Result<Self, BadLocation> {
        Self::parse_with(path, true)
    }

    fn parse_with(path: &str, prefix: bool) -> Result<Self, BadLocation> {
        let split = |rest: &str| {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            (!bucket.is_empty() && (prefix || !key.is_empty())).then(|| (bucket.to_owned(), key.to_owned()))
        };
        let bad =
            |scheme, what| BadLocation { path: path.to_owned(), scheme, what: if prefix { "prefix" } else { what } };
        if let Some(rest) = path.strip_prefix("s3://") {
            let (bucket, key) = split(rest).ok_or_else(|| bad("s3", "key"))?;
            Ok(Location::S3 { bucket, key })
        } else if let Some(rest) = path.strip_prefix("gs://") {
            let (bucket, object) = split(rest).ok_or_else(|| bad("gs", "object"))?;
            Ok(Location::Gcs { bucket, object })
        } else {
            Ok(Location::Local(PathBuf::from(path)))
        }
    }

    /// The object key within its bucket (none for a local path).
    pub fn key(&self) -> Option<&str> {
        match self {
            Location::S3 { key, .. } => Some(key),
            Location::Gcs { object, .. } => Some(object),
            Location::Local(_) => None,
        }
    }
}

/// The path as files.json writes it: `s3://bucket/key`, `gs://bucket/object`, or the local path.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Location::Gcs { bucket, object } => write!(f, "gs://{bucket}/{object}"),
            Location::Local(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Location::parse("s3://b/dir/k.ndjson.gz").unwrap(),
            Location::S3 { bucket: "b".into(), key: "dir/k.ndjson.gz".into() }
        );
        assert_eq!(Location::parse("/data/x.ndjson").unwrap(), Location::Local("/data/x.ndjson".into()));
        assert_eq!(
            Location::parse("s3://bucket-only").unwrap_err().to_string(),
            "s3://bucket-only: expected s3://bucket/key"
        );
        assert!(Location::parse("s3:///key").is_err());
        let gs = Location::parse("gs://b/dir/k.ndjson.zst").unwrap();
        assert_eq!(gs, Location::Gcs { bucket: "b".into(), object: "dir/k.ndjson.zst".into() });
        assert_eq!(gs.key(), Some("dir/k.ndjson.zst"));
        assert_eq!(Location::parse("/x").unwrap().key(), None);
        assert!(Location::parse("gs://bucket-only").is_err());
    }

    #[test]
    fn prefixes_may_be_a_whole_bucket() {
        assert_eq!(Location::parse_prefix("s3://b").unwrap(), Location::S3 { bucket: "b".into(), key: "".into() });
        assert_eq!(
            Location::parse_prefix("gs://b/dir/").unwrap(),
            Location::Gcs { bucket: "b".into(), object: "dir/".into() }
        );
        assert_eq!(Location::parse_prefix("s3:///x").unwrap_err().to_string(), "s3:///x: expected s3://bucket/prefix");
        assert!(Location::parse_prefix("gs://").is_err());
        assert_eq!(Location::parse_prefix("/var/dl").unwrap(), Location::Local("/var/dl".into()));
    }

    #[test]
    fn shows_what_it_parsed() {
        for path in ["s3://b/dir/k.ndjson.gz", "gs://b/o.ndjson", "/data/x.ndjson", "relative/y.ndjson"] {
            assert_eq!(Location::parse(path).unwrap().to_string(), path);
        }
    }
}
