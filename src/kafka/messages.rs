//! The two Kafka requests the idempotent producer writes itself, on rskafka's protocol layer
//! (its `RequestBody` and versioned read and write traits, with rskafka's primitives):
//! - `InitProducerId` (API key 22), which rskafka does not have: versions 0 to 4, flexible
//!   (tagged fields) from 2;
//! - `Produce` (API key 0) of one record batch already encoded ([`rw_core::BatchEncoder`]),
//!   versions 3 to 7 as rskafka's own, whose response type it reuses.
//!
//! References: <https://kafka.apache.org/protocol#The_Messages_InitProducerId> and
//! `#The_Messages_Produce`.

#[cfg(test)]
use std::io::Cursor;
use std::io::{Read, Write};

use rskafka::protocol::api_key::ApiKey;
use rskafka::protocol::api_version::{ApiVersion, ApiVersionRange};
use rskafka::protocol::error::Error as ProtocolError;
use rskafka::protocol::messages::{
    ProduceResponse, ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};
use rskafka::protocol::primitives::{Int16, Int32, Int64, TaggedFields, UnsignedVarint};
use rskafka::protocol::traits::{ReadType, WriteType};

/// `InitProducerId` for an idempotent (not transactional) producer.
#[derive(Debug)]
pub(crate) struct InitProducerId;

/// Its answer.
#[derive(Debug)]
pub(crate) struct InitProducerIdResponse {
    /// Read, not acted on: one request a run (and one per renewal).
    #[allow(dead_code)]
    pub throttle_time_ms: i32,
    pub error: Option<ProtocolError>,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// The first flexible version of `InitProducerId`.
const INIT_FLEXIBLE: i16 = 2;

impl RequestBody for InitProducerId {
    type ResponseBody = InitProducerIdResponse;
    const API_KEY: ApiKey = ApiKey::InitProducerId;
    const API_VERSION_RANGE: ApiVersionRange = ApiVersionRange::new(ApiVersion(Int16(0)), ApiVersion(Int16(4)));
    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(INIT_FLEXIBLE));
}

impl WriteVersionedType<Vec<u8>> for InitProducerId {
    fn write_versioned(&self, w: &mut Vec<u8>, version: ApiVersion) -> Result<(), WriteVersionedError> {
        let v = version.0 .0;
        if v >= INIT_FLEXIBLE {
            // transactional_id: a null compact string.
            UnsignedVarint(0).write(w)?;
        } else {
            // transactional_id: a null string.
            Int16(-1).write(w)?;
        }
        // transaction_timeout_ms: unused without a transactional id.
        Int32(60_000).write(w)?;
        if v >= 3 {
            // producer_id and producer_epoch: none yet (a new id, not an epoch bump).
            Int64(-1).write(w)?;
            Int16(-1).write(w)?;
        }
        if v >= INIT_FLEXIBLE {
            TaggedFields::default().write(w)?;
        }
        Ok(())
    }
}

impl<R: Read> ReadVersionedType<R> for InitProducerIdResponse {
    fn read_versioned(r: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let throttle_time_ms = Int32::read(r)?.0;
        let error = ProtocolError::new(Int16::read(r)?.0);
        let producer_id = Int64::read(r)?.0;
        let producer_epoch = Int16::read(r)?.0;
        if version.0 .0 >= INIT_FLEXIBLE {
            TaggedFields::read(r)?;
        }
        Ok(InitProducerIdResponse { throttle_time_ms, error, producer_id, producer_epoch })
    }
}

/// `Produce` of one encoded record batch to one partition.
#[derive(Debug)]
pub(crate) struct ProduceBatch<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// -1: all in-sync replicas (idempotence requires it).
    pub acks: i16,
    pub timeout_ms: i32,
    /// One record batch, as [`rw_core::BatchEncoder`] wrote it.
    pub batch: &'a [u8],
}

impl RequestBody for ProduceBatch<'_> {
    type ResponseBody = ProduceResponse;
    const API_KEY: ApiKey = ApiKey::Produce;
    /// Version 3 brought record batches (message format v2); up to 7, as rskafka reads the
    /// response.
    const API_VERSION_RANGE: ApiVersionRange = ApiVersionRange::new(ApiVersion(Int16(3)), ApiVersion(Int16(7)));
    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(9));
}

impl WriteVersionedType<Vec<u8>> for ProduceBatch<'_> {
    fn write_versioned(&self, w: &mut Vec<u8>, _version: ApiVersion) -> Result<(), WriteVersionedError> {
        let too_large = |_| {
            WriteVersionedError::WriteError(rskafka::protocol::traits::WriteError::Malformed(
                "a record batch larger than 2 GiB".into(),
            ))
        };
        let topic_len = i16::try_from(self.topic.len()).map_err(|_| {
            WriteVersionedError::WriteError(rskafka::protocol::traits::WriteError::Malformed(
                "topic name too long".into(),
            ))
        })?;
        let batch_len = i32::try_from(self.batch.len()).map_err(too_large)?;
        w.reserve(self.batch.len() + self.topic.len() + 32);
        // transactional_id: null.
        Int16(-1).write(w)?;
        Int16(self.acks).write(w)?;
        Int32(self.timeout_ms).write(w)?;
        // One topic, one partition, one batch.
        Int32(1).write(w)?;
        Int16(topic_len).write(w)?;
        w.write_all(self.topic.as_bytes()).map_err(rskafka::protocol::traits::WriteError::from)?;
        Int32(1).write(w)?;
        Int32(self.partition).write(w)?;
        Int32(batch_len).write(w)?;
        w.write_all(self.batch).map_err(rskafka::protocol::traits::WriteError::from)?;
        Ok(())
    }
}

/// Reads an `InitProducerId` response from bytes (for the tests).
#[cfg(test)]
pub(crate) fn read_init(bytes: Vec<u8>, version: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(version))).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::protocol::messages::{ProduceRequest, ProduceRequestPartitionData, ProduceRequestTopicData};
    use rskafka::protocol::primitives::{NullableString, Records, String_};

    /// Our produce request is byte for byte rskafka's for the same batch, in every version
    /// both write.
    #[test]
    fn produce_batch_is_rskafka_s_request() {
        let records = rw_core::Records::with_capacity(2, 10, chrono::DateTime::from_timestamp_millis(5).unwrap());
        let mut records = records;
        let header: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"c1"[..]);
        records.push(&[b'k'; rw_core::KEY_LEN], b"{\"a\":1}", &header);
        let mut batch = Vec::new();
        rw_core::BatchEncoder::new(rw_core::BatchCompression::None, 1).encode(&records, None, &mut batch).unwrap();
        for v in 3..=7 {
            let parsed = rskafka::protocol::record::RecordBatch::read(&mut Cursor::new(&batch)).unwrap();
            let ours = ProduceBatch { topic: "topic-x", partition: 4, acks: -1, timeout_ms: 30_000, batch: &batch };
            let mut a = Vec::new();
            ours.write_versioned(&mut a, ApiVersion(Int16(v))).unwrap();
            let theirs = ProduceRequest {
                transactional_id: NullableString(None),
                acks: Int16(-1),
                timeout_ms: Int32(30_000),
                topic_data: vec![ProduceRequestTopicData {
                    name: String_("topic-x".into()),
                    partition_data: vec![ProduceRequestPartitionData {
                        index: Int32(4),
                        records: Records(vec![parsed]),
                    }],
                }],
            };
            let mut b = Vec::new();
            theirs.write_versioned(&mut b, ApiVersion(Int16(v))).unwrap();
            assert_eq!(a, b, "version {v}");
        }
    }

    /// `InitProducerId` as the protocol lays it out, in its non-flexible and flexible forms.
    #[test]
    fn init_producer_id_request_and_response() {
        let mut v0 = Vec::new();
        InitProducerId.write_versioned(&mut v0, ApiVersion(Int16(0))).unwrap();
        assert_eq!(v0, [0xff, 0xff, 0, 0, 0xea, 0x60]);
        let mut v4 = Vec::new();
        InitProducerId.write_versioned(&mut v4, ApiVersion(Int16(4))).unwrap();
        assert_eq!(v4, [0, 0, 0, 0xea, 0x60, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        let mut answer = vec![0, 0, 0, 7, 0, 0];
        answer.extend_from_slice(&1234i64.to_be_bytes());
        answer.extend_from_slice(&2i16.to_be_bytes());
        let r = read_init(answer.clone(), 1);
        assert_eq!((r.throttle_time_ms, r.error, r.producer_id, r.producer_epoch), (7, None, 1234, 2));
        answer.push(0);
        assert_eq!(read_init(answer, 3).producer_id, 1234);
        let mut refused = vec![0, 0, 0, 0, 0, 31];
        refused.extend_from_slice(&(-1i64).to_be_bytes());
        refused.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(read_init(refused, 0).error, Some(ProtocolError::ClusterAuthorizationFailed));
    }
}
