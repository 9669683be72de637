//! Kafka's record batch (message format v2, KIP-98), written straight from a batch's compact
//! [`Records`]: the records are laid out once, into a buffer the encoder keeps, compressed
//! with a context it keeps too (zstd's, gzip's, snappy's), and the CRC-32C is computed once
//! over what follows it. No record is allocated on its own on the way.
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 = 2 | crc u32
//! | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64
//! | producerId i64 | producerEpoch i16 | baseSequence i32 | records count i32 | records…
//! record: length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//!         | key length varint, key | value length varint, value | headers count varint
//!         | per header: key length varint, key, value length varint, value
//! ```
//! The CRC covers everything from `attributes` on; the records part is what the codec
//! compresses. Every record of a batch carries the batch's timestamp (delta 0) and one
//! header, `connection_ids`.

use crate::route::HEADER;
use crate::sequence::Sequence;
use crate::Records;

/// A record batch's compression, as its attributes' lowest three bits name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCompression {
    /// 0: none.
    None,
    /// 1: gzip.
    Gzip,
    /// 2: snappy (a raw block, as librdkafka and rskafka write it).
    Snappy,
    /// 3: LZ4 (the frame format).
    Lz4,
    /// 4: zstd.
    Zstd,
}

impl BatchCompression {
    fn attribute(self) -> i16 {
        match self {
            BatchCompression::None => 0,
            BatchCompression::Gzip => 1,
            BatchCompression::Snappy => 2,
            BatchCompression::Lz4 => 3,
            BatchCompression::Zstd => 4,
        }
    }
}

/// Why a batch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The codec failed.
    #[error("{codec} compression of a record batch failed")]
    Compress {
        /// The codec.
        codec: &'static str,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
    /// More bytes or records than the format can count.
    #[error("a record batch of {0} bytes is larger than Kafka's format allows")]
    TooLarge(usize),
}

/// Writes record batches; keeps its buffer and codec context from one batch to the next
/// (one per connection or task: it is not shared).
pub struct BatchEncoder {
    compression: BatchCompression,
    /// zstd's compression level.
    level: i32,
    /// The records before compression.
    plain: Vec<u8>,
    /// zstd's and snappy's output, appended to the batch from here (compressing into the
    /// batch itself would zero the codec's worst case there first).
    packed: Vec<u8>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    gzip: Option<flate2::Compress>,
    snappy: snap::raw::Encoder,
}

impl std::fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchEncoder").field("compression", &self.compression).field("level", &self.level).finish()
    }
}

/// Offset of the CRC in a batch, and of the attributes (where the CRC-checked part begins).
const CRC_AT: usize = 8 + 4 + 4 + 1;
const ATTRIBUTES_AT: usize = CRC_AT + 4;
/// Offset of the records count, and of the records.
const COUNT_AT: usize = ATTRIBUTES_AT + 2 + 4 + 8 + 8 + 8 + 2 + 4;
const RECORDS_AT: usize = COUNT_AT + 4;

impl BatchEncoder {
    /// An encoder for `compression`; `zstd_level` is zstd's level (Kafka's default is 3,
    /// librdkafka's and this worker's 1).
    pub fn new(compression: BatchCompression, zstd_level: i32) -> Self {
        BatchEncoder {
            compression,
            level: zstd_level,
            plain: Vec::new(),
            packed: Vec::new(),
            zstd: None,
            gzip: None,
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Appends one record batch of `records` to `out`, under `sequence` (the idempotent
    /// producer's id, epoch and first sequence number) or none; returns its length.
    pub fn encode(
        &mut self,
        records: &Records,
        sequence: Option<Sequence>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let start = out.len();
        let n = records.len();
        let ts = records.timestamp().timestamp_millis();
        let (producer_id, epoch, base_sequence) =
            sequence.map_or((-1, -1, -1), |s| (s.producer.id, s.producer.epoch, s.base));
        out.reserve(RECORDS_AT + records.value_bytes() + n * 64);
        out.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
        out.extend_from_slice(&0i32.to_be_bytes()); // batchLength, set below
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        out.push(2); // magic
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
        out.extend_from_slice(&self.compression.attribute().to_be_bytes());
        out.extend_from_slice(&(n.saturating_sub(1) as i32).to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&producer_id.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&base_sequence.to_be_bytes());
        let count = i32::try_from(n).map_err(|_| EncodeError::TooLarge(records.value_bytes()))?;
        out.extend_from_slice(&count.to_be_bytes());
        if self.compression == BatchCompression::None {
            write_records(records, out);
        } else {
            let mut plain = std::mem::take(&mut self.plain);
            plain.clear();
            write_records(records, &mut plain);
            let compressed = self.compress(&plain, out);
            self.plain = plain;
            compressed?;
        }
        let len = out.len() - start;
        let batch_length = i32::try_from(len - 12).map_err(|_| EncodeError::TooLarge(len))?;
        out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&out[start + ATTRIBUTES_AT..]);
        out[start + CRC_AT..start + CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(len)
    }

    /// Appends `plain` compressed to `out`.
    fn compress(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let err = |codec| move |source| EncodeError::Compress { codec, source };
        match self.compression {
            BatchCompression::None => out.extend_from_slice(plain),
            BatchCompression::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::bulk::Compressor::new(self.level).map_err(err("zstd"))?);
                }
                let z = self.zstd.as_mut().expect("made above");
                self.packed.clear();
                self.packed.reserve(zstd::zstd_safe::compress_bound(plain.len()));
                // Written into the vector's spare capacity, which is not zeroed first.
                z.compress_to_buffer(plain, &mut self.packed).map_err(err("zstd"))?;
                out.extend_from_slice(&self.packed);
            }
            BatchCompression::Gzip => {
                let gz = self.gzip.get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), false));
                gz.reset();
                // A gzip member: header, raw deflate, CRC-32 and length.
                out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
                let mut input = plain;
                loop {
                    out.reserve(input.len() / 2 + 1024);
                    let before = gz.total_in();
                    let status = gz
                        .compress_vec(input, out, flate2::FlushCompress::Finish)
                        .map_err(|e| err("gzip")(std::io::Error::other(e)))?;
                    input = &input[(gz.total_in() - before) as usize..];
                    if status == flate2::Status::StreamEnd {
                        break;
                    }
                }
                let mut crc = flate2::Crc::new();
                crc.update(plain);
                out.extend_from_slice(&crc.sum().to_le_bytes());
                out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
            }
            BatchCompression::Snappy => {
                let at = out.len();
                out.resize(at + snap::raw::max_compress_len(plain.len()), 0);
                let written =
                    self.snappy.compress(plain, &mut out[at..]).map_err(|e| err("snappy")(std::io::Error::other(e)))?;
                out.truncate(at + written);
            }
            BatchCompression::Lz4 => {
                // The LZ4 frame format, as Kafka reads it since message format v1.
                let mut framed = lz4::EncoderBuilder::new().level(1).build(std::mem::take(out)).map_err(err("lz4"))?;
                std::io::Write::write_all(&mut framed, plain).map_err(err("lz4"))?;
                let (written, finished) = framed.finish();
                *out = written;
                finished.map_err(err("lz4"))?;
            }
        }
        Ok(())
    }
}

/// Kafka's varint: zig-zag, then seven bits a byte, lowest first.
fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Bytes of `v` as a varint.
fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

/// The records, uncompressed.
fn write_records(records: &Records, out: &mut Vec<u8>) {
    for (i, r) in records.iter().enumerate() {
        let fields = |k: &[u8], v: &[u8]| varint_len(k.len() as i64) + k.len() + varint_len(v.len() as i64) + v.len();
        let body = 1 // attributes
            + 1 // timestampDelta 0
            + varint_len(i as i64)
            + fields(r.key, r.value)
            + 1 // headers count 1
            + fields(HEADER.as_bytes(), r.header);
        varint(out, body as i64);
        out.push(0);
        varint(out, 0);
        varint(out, i as i64);
        for bytes in [r.key, r.value] {
            varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        varint(out, 1);
        for bytes in [HEADER.as_bytes(), r.header] {
            varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KEY_LEN;
    use proptest::prelude::*;
    use rskafka::protocol::record::{
        ControlBatchOrRecords, Record as RsRecord, RecordBatch, RecordBatchCompression, RecordBatchTimestampType,
        RecordHeader,
    };
    use rskafka::protocol::traits::{ReadType, WriteType};
    use std::sync::Arc;

    const ALL: [BatchCompression; 5] = [
        BatchCompression::None,
        BatchCompression::Gzip,
        BatchCompression::Snappy,
        BatchCompression::Lz4,
        BatchCompression::Zstd,
    ];

    fn records(lines: &[(Vec<u8>, u8)], ts_ms: i64) -> Records {
        let ts = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap();
        let mut r = Records::with_capacity(lines.len(), 0, ts);
        for (i, (value, header)) in lines.iter().enumerate() {
            let mut key = [b'k'; KEY_LEN];
            key[..8].copy_from_slice(format!("{i:08}").as_bytes());
            r.push(&key, value, &Arc::from(vec![b'c', b'0' + header % 3]));
        }
        r
    }

    /// The records as rskafka would write them: the independent writer and reader.
    fn theirs(r: &Records, seq: Option<Sequence>, compression: RecordBatchCompression) -> RecordBatch {
        let ts = r.timestamp().timestamp_millis();
        let (producer_id, producer_epoch, base_sequence) =
            seq.map_or((-1, -1, -1), |s| (s.producer.id, s.producer.epoch, s.base));
        let recs = r
            .iter()
            .enumerate()
            .map(|(i, x)| RsRecord {
                timestamp_delta: 0,
                offset_delta: i as i32,
                key: Some(x.key.to_vec()),
                value: Some(x.value.to_vec()),
                headers: vec![RecordHeader { key: HEADER.to_owned(), value: x.header.to_vec() }],
            })
            .collect();
        RecordBatch {
            base_offset: 0,
            partition_leader_epoch: -1,
            last_offset_delta: r.len().saturating_sub(1) as i32,
            first_timestamp: ts,
            max_timestamp: ts,
            producer_id,
            producer_epoch,
            base_sequence,
            records: ControlBatchOrRecords::Records(recs),
            compression,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        }
    }

    fn rs_compression(c: BatchCompression) -> RecordBatchCompression {
        match c {
            BatchCompression::None => RecordBatchCompression::NoCompression,
            BatchCompression::Gzip => RecordBatchCompression::Gzip,
            BatchCompression::Snappy => RecordBatchCompression::Snappy,
            BatchCompression::Lz4 => RecordBatchCompression::Lz4,
            BatchCompression::Zstd => RecordBatchCompression::Zstd,
        }
    }

    fn lines() -> impl Strategy<Value = Vec<(Vec<u8>, u8)>> {
        prop::collection::vec((prop::collection::vec(any::<u8>(), 0..300), any::<u8>()), 1..60)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Uncompressed, the batch is byte for byte what rskafka writes for the same records.
        #[test]
        fn uncompressed_batches_are_rskafka_s_bytes(lines in lines(), ts in 0i64..4_000_000_000_000, seq in any::<Option<(i64, i16, i32)>>()) {
            let seq = seq.map(|(id, epoch, base)| Sequence { producer: crate::ProducerId { id, epoch }, base: base & i32::MAX });
            let r = records(&lines, ts);
            let mut ours = Vec::new();
            let len = BatchEncoder::new(BatchCompression::None, 1).encode(&r, seq, &mut ours).unwrap();
            prop_assert_eq!(len, ours.len());
            let mut want = Vec::new();
            theirs(&r, seq, RecordBatchCompression::NoCompression).write(&mut want).unwrap();
            prop_assert_eq!(ours, want);
        }

        /// With every codec, one encoder writing batch after batch (its context reused),
        /// rskafka reads back the same batch: records, sequence, timestamps; the CRC checks.
        #[test]
        fn every_codec_reads_back_as_written(batches in prop::collection::vec(lines(), 1..4), ts in 0i64..4_000_000_000_000) {
            for c in ALL {
                let mut enc = BatchEncoder::new(c, 1);
                let mut out = vec![0xAA; 3];
                for (i, lines) in batches.iter().enumerate() {
                    let r = records(lines, ts + i as i64);
                    let seq = Some(Sequence { producer: crate::ProducerId { id: 42, epoch: 3 }, base: 10 * i as i32 });
                    let at = out.len();
                    let len = enc.encode(&r, seq, &mut out).unwrap();
                    prop_assert_eq!(at + len, out.len());
                    let mut cursor = std::io::Cursor::new(&out[at..]);
                    let got = RecordBatch::read(&mut cursor).unwrap();
                    prop_assert_eq!(cursor.position() as usize, len);
                    prop_assert_eq!(got, theirs(&r, seq, rs_compression(c)), "{:?}", c);
                }
            }
        }
    }

    #[test]
    fn a_codec_s_bytes_are_compressed() {
        let line = br#"{"messageId":"m","type":"track","properties":{"path":"/a/b/c"}}"#.to_vec();
        let r = records(&vec![(line, 0); 200], 1_700_000_000_000);
        let plain = BatchEncoder::new(BatchCompression::None, 1).encode(&r, None, &mut Vec::new()).unwrap();
        for c in ALL.into_iter().skip(1) {
            let len = BatchEncoder::new(c, 1).encode(&r, None, &mut Vec::new()).unwrap();
            assert!(len * 5 < plain, "{c:?}: {len} of {plain}");
        }
    }

    #[test]
    fn varints_are_kafka_s_zigzag() {
        // From Kafka's ByteUtilsTest: zig-zag maps 0, -1, 1, -2, 2 to 0, 1, 2, 3, 4.
        for (v, bytes) in [(0i64, vec![0u8]), (-1, vec![1]), (1, vec![2]), (63, vec![126]), (64, vec![128, 1])] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
        }
        for v in [300i64, -300, i32::MAX as i64, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }
}
