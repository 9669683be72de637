//! The key of every record: the line's identity ([`LineKeys`], [`FileKeys`]), the way back
//! from a key to its file and line ([`parse_key`]), and which keys a resumed worker can own
//! ([`Ours`]). Pure: the batcher writes the keys, the resume's read-back and matching read
//! them.

use crate::broker::Key;

/// The key of every record: the line's identity, the job, the file (its position in
/// files.json and its path) and the line number. A line sent again (a retry, a restart)
/// carries the key it had before, and no other line ever has it, so a record found in the
/// topic is matched only to the line that produced it (see [`crate::resume::Recovered`]). Two lines
/// with the same bytes are two keys. `messageId` is not the key: ingest writes an event
/// again with the same id when it retries, and the Go worker sent a random UUID, so no
/// consumer relies on it.
///
/// On the wire a key is a UUID (version 8, RFC 9562's custom layout): 60 bits of the file's
/// identity (a UUID v5 of the job, position and path, computed once per file) and the line
/// number in the low 62 bits. No hashing per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineKeys {
    ns: uuid::Uuid,
}

impl LineKeys {
    /// The keys of job `job_id`'s lines: a UUID v5 namespace of its own for the job.
    pub fn for_job(job_id: &str) -> Self {
        let name = format!("reprocessing-worker:job:{job_id}");
        Self { ns: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()) }
    }

    /// The keys of the lines of the file at position `index` of files.json.
    pub fn file(&self, index: usize, path: &str) -> FileKeys {
        let name = format!("{index}:{path}");
        let id = uuid::Uuid::new_v5(&self.ns, name.as_bytes());
        let mut file = [0; 8];
        file.copy_from_slice(&id.as_bytes()[..8]);
        FileKeys { file }
    }
}

/// The keys of one file's lines: see [`LineKeys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKeys {
    /// The file's identity (the version nibble is overwritten in the key).
    file: [u8; 8],
}

impl FileKeys {
    /// The key of line `line` (1-based), hyphenated.
    pub fn key(&self, line: u64) -> Key {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.file);
        // The variant takes the top two bits of byte 8: lines stay below 2^62.
        bytes[8..].copy_from_slice(&(line & (u64::MAX >> 2)).to_be_bytes());
        let id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
        let mut out = [0; crate::broker::KEY_LEN];
        id.hyphenated().encode_lower(&mut out);
        out
    }

    /// The file's identity as its keys carry it (the first 8 bytes of the UUID, version
    /// nibble included): what `parse_key` gives back for every line of this file.
    pub fn id(&self) -> FileId {
        let mut id = self.file;
        // RFC 9562's version 8 in the high nibble of byte 6, as `key` writes it.
        id[6] = (id[6] & 0x0f) | 0x80;
        id
    }
}

/// A file's identity in its records' keys (see [`FileKeys::id`]).
pub(crate) type FileId = [u8; 8];

/// The file identity and line number a record key carries, if it is one of this program's
/// keys (a hyphenated UUID); `None` for any other key. The inverse of [`FileKeys::key`].
pub(crate) fn parse_key(key: &[u8]) -> Option<(FileId, u64)> {
    let id = uuid::Uuid::try_parse_ascii(key).ok()?;
    let b = id.as_bytes();
    let mut file = [0; 8];
    file.copy_from_slice(&b[..8]);
    let line = u64::from_be_bytes(b[8..].try_into().ok()?) & (u64::MAX >> 2);
    Some((file, line))
}

/// The records a resumed worker can own: the lines of its files from its resume point on,
/// by key. Everything else in a partition it reads back (other producers' records, other
/// workers' and other jobs' lines, its own lines before the resume point) is passed over as
/// it streams by, so that what a read-back keeps is bounded by what this worker could have
/// sent, not by the topic's traffic. One hash look-up per record, no hashing of values.
#[derive(Debug, Clone, Default)]
pub struct Ours {
    /// Each file's identity, with the first line of it that can be ours.
    files: std::collections::HashMap<FileId, u64>,
}

impl Ours {
    /// The files (their keys, and the first line of each that is after the resume point).
    pub fn new(files: impl IntoIterator<Item = (FileKeys, u64)>) -> Self {
        Ours { files: files.into_iter().map(|(k, first)| (k.id(), first)).collect() }
    }

    /// Whether a record with this key can be one of the lines this worker is to send.
    pub fn admits(&self, key: &[u8]) -> bool {
        parse_key(key).is_some_and(|(file, line)| self.files.get(&file).is_some_and(|&first| line >= first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gives_back_its_file_and_line_and_ours_admits_only_our_lines_after_the_resume_point() {
        let keys = LineKeys::for_job("job-1");
        let (a, b) = (keys.file(0, "s3://b/a.ndjson"), keys.file(1, "s3://b/b.ndjson"));
        for line in [1, 2, 255, 1 << 40, (1 << 62) - 1] {
            let key = a.key(line);
            assert_eq!(parse_key(&key), Some((a.id(), line)));
            // The identity is the key's first 8 bytes as text: 8 hex digits, a hyphen, 4, a hyphen, 4.
            let hex: String = a.id().iter().map(|b| format!("{b:02x}")).collect();
            let text = std::str::from_utf8(&key).unwrap();
            assert_eq!(format!("{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16]), text[..18]);
        }
        assert_ne!(a.id(), b.id());
        assert_eq!(parse_key(b"not a uuid"), None);
        assert_eq!(parse_key(b""), None);
        let ours = Ours::new([(a, 100), (b, 1)]);
        assert!(!ours.admits(&a.key(99)), "before the resume point");
        assert!(ours.admits(&a.key(100)) && ours.admits(&a.key(5_000)));
        assert!(ours.admits(&b.key(1)));
        let other_job = LineKeys::for_job("job-2").file(0, "s3://b/a.ndjson");
        assert!(!ours.admits(&other_job.key(100)), "another job's line");
        assert!(!ours.admits(&keys.file(2, "s3://b/a.ndjson").key(100)), "the same path at another position");
        assert!(!ours.admits(b"0e8f2c47-1d0b-4a56-9b2e-6f0c1a2b3c4d"), "a random UUID");
        assert!(!ours.admits(b"m1"));
    }
}
