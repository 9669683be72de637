//! Where a file lives: `s3://bucket/key`, `gs://bucket/object`, or a local path. Parsed once,
//! here; the readers, the dead letters and `start_file` use the parsed form.

use std::path::PathBuf;

/// A file's place, parsed from its path in files.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, key: String },
    Gcs { bucket: String, object: String },
    Local(PathBuf),
}

/// An `s3://` or `gs://` path without a bucket or an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: expected {scheme}://bucket/{what}")]
pub struct BadLocation {
    pub path: String,
    pub scheme: &'static str,
    what: &'static str,
}

impl Location {
    pub fn parse(path: &str) -> Result<Self, BadLocation> {
        let split = |rest: &str| match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Some((bucket.to_owned(), key.to_owned())),
            _ => None,
        };
        let bad = |scheme, what| BadLocation { path: path.to_owned(), scheme, what };
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

    /// The GCS bucket of a `gs://` path.
    pub fn gcs_bucket(path: &str) -> Option<&str> {
        path.strip_prefix("gs://")?.split('/').next().filter(|b| !b.is_empty())
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
        assert_eq!(Location::gcs_bucket("gs://b/x/y"), Some("b"));
        assert_eq!(Location::gcs_bucket("s3://b/x"), None);
    }
}
