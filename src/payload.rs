//! Payloads with rules of their own: the workflow input, which may be
//! "nothing", and update results that carry the run's notice.
//!
//! The SDK's `Option<T>` needs exactly one JSON payload. A client written from
//! the reference guide starts the workflow with no argument (zero payloads);
//! other SDKs send `binary/null` or JSON `null`. [`Nullable`] accepts all three.
//!
//! An update's result is the guide's plain JSON; [`Noticed`] adds, in the
//! payload's metadata (which every SDK's converter ignores beyond
//! `encoding`), that the run is about to continue-as-new, so our API can
//! hold the account's calls instead of racing the continue-as-new, and the
//! entries decided since the previous result, so our API can write them
//! to the ledger at once.

use serde::Serialize;
use serde::de::DeserializeOwned;
use temporalio_common::data_converters::{
    PayloadConversionError, SerializationContext, TemporalDeserializable, TemporalSerializable,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

use crate::domain::{LoyaltyState, ProjectionBatch};

const ENCODING: &str = "encoding";
const JSON: &[u8] = b"json/plain";
const NULL: &[u8] = b"binary/null";
/// Metadata key of [`Noticed::run_ending`].
const RUN_ENDING: &str = "loyalty-run-ending";
/// Metadata key of [`Noticed::entries`] (JSON).
const ENTRIES: &str = "loyalty-entries";

/// A value, or nothing: zero payloads, `binary/null` or JSON `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nullable<T>(pub Option<T>);

/// Input of `LoyaltyEntityWorkflow`: nothing for a new account, the carried
/// `LoyaltyState` after continue-as-new.
pub type WorkflowInput = Nullable<LoyaltyState>;

impl WorkflowInput {
    /// The input that opens a new account.
    pub fn new_account() -> Self {
        Self(None)
    }
}

fn encoding_error(e: serde_json::Error) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(e))
}

impl<T: Serialize> TemporalSerializable for Nullable<T> {
    fn to_payload(&self, _: &SerializationContext<'_>) -> Result<Payload, PayloadConversionError> {
        let (encoding, data) = match &self.0 {
            None => (NULL, Vec::new()),
            Some(value) => (JSON, serde_json::to_vec(value).map_err(encoding_error)?),
        };
        Ok(Payload { metadata: [(ENCODING.to_owned(), encoding.to_vec())].into(), data, external_payloads: vec![] })
    }
}

impl<T: DeserializeOwned> TemporalDeserializable for Nullable<T> {
    fn from_payload(_: &SerializationContext<'_>, payload: Payload) -> Result<Self, PayloadConversionError> {
        match payload.metadata.get(ENCODING).map(Vec::as_slice) {
            Some(NULL) => Ok(Self(None)),
            Some(JSON) => serde_json::from_slice(&payload.data).map(Self).map_err(encoding_error),
            _ => Err(PayloadConversionError::WrongEncoding),
        }
    }

    fn from_payloads(ctx: &SerializationContext<'_>, payloads: Vec<Payload>) -> Result<Self, PayloadConversionError> {
        let mut payloads = payloads.into_iter();
        match (payloads.next(), payloads.next()) {
            (None, _) => Ok(Self(None)),
            (Some(only), None) => Self::from_payload(ctx, only),
            _ => Err(PayloadConversionError::WrongEncoding),
        }
    }
}

/// An update's result, whether the run that decided it is about to
/// continue-as-new (`workflow`, "the run's notice"), and what it decided
/// since the previous result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Noticed<T> {
    /// The result, as the guide's JSON.
    pub value: T,
    /// The run continues-as-new within a moment: calls sent now would race it.
    pub run_ending: bool,
    /// The entries decided since the previous update's result, this one's
    /// included, as a fenced write (none if too many: the run writes them).
    /// Temporal recorded them before the caller sees them, so writing them
    /// never puts an undecided entry in the ledger.
    pub entries: Option<ProjectionBatch>,
}

impl<T: Serialize> TemporalSerializable for Noticed<T> {
    fn to_payload(&self, _: &SerializationContext<'_>) -> Result<Payload, PayloadConversionError> {
        let mut metadata: std::collections::HashMap<String, Vec<u8>> = [(ENCODING.to_owned(), JSON.to_vec())].into();
        if self.run_ending {
            metadata.insert(RUN_ENDING.to_owned(), b"true".to_vec());
        }
        if let Some(entries) = &self.entries {
            metadata.insert(ENTRIES.to_owned(), serde_json::to_vec(entries).map_err(encoding_error)?);
        }
        let data = serde_json::to_vec(&self.value).map_err(encoding_error)?;
        Ok(Payload { metadata, data, external_payloads: vec![] })
    }
}

impl<T: DeserializeOwned> TemporalDeserializable for Noticed<T> {
    fn from_payload(_: &SerializationContext<'_>, payload: Payload) -> Result<Self, PayloadConversionError> {
        if payload.metadata.get(ENCODING).map(Vec::as_slice) != Some(JSON) {
            return Err(PayloadConversionError::WrongEncoding);
        }
        let run_ending = payload.metadata.get(RUN_ENDING).is_some_and(|v| v == b"true");
        // Entries that do not decode are left to the run's own write.
        let entries = payload.metadata.get(ENTRIES).and_then(|v| serde_json::from_slice(v).ok());
        let value = serde_json::from_slice(&payload.data).map_err(encoding_error)?;
        Ok(Self { value, run_ending, entries })
    }
}

#[cfg(test)]
mod tests {
    use temporalio_common::data_converters::{DataConverter, SerializationContextData};

    use super::*;

    // Through the SDK's default converter, as the worker decodes it.
    async fn decode(payloads: Vec<Payload>) -> Result<WorkflowInput, PayloadConversionError> {
        DataConverter::default().from_payloads(&SerializationContextData::None, payloads).await
    }

    async fn encode(input: &WorkflowInput) -> Vec<Payload> {
        DataConverter::default().to_payloads(&SerializationContextData::None, input).await.unwrap()
    }

    #[tokio::test]
    async fn no_payload_and_null_open_a_new_account() {
        assert_eq!(decode(vec![]).await.unwrap(), Nullable(None));
        assert_eq!(decode(encode(&WorkflowInput::new_account()).await).await.unwrap(), Nullable(None));
        let json_null = Payload {
            metadata: [(ENCODING.into(), JSON.to_vec())].into(),
            data: b"null".to_vec(),
            external_payloads: vec![],
        };
        assert_eq!(decode(vec![json_null]).await.unwrap(), Nullable(None));
    }

    #[tokio::test]
    async fn carried_state_round_trips_as_plain_json() {
        let input = Nullable(Some(LoyaltyState::open("c1")));
        let payloads = encode(&input).await;
        assert_eq!(payloads[0].metadata.get(ENCODING).map(Vec::as_slice), Some(JSON));
        let json: serde_json::Value = serde_json::from_slice(&payloads[0].data).unwrap();
        assert_eq!(json["customer_id"], "c1");
        assert_eq!(decode(payloads).await.unwrap(), input);
    }

    #[tokio::test]
    async fn a_notice_rides_in_metadata_and_the_result_stays_the_guides_json() {
        let converter = DataConverter::default();
        let ctx = SerializationContextData::None;
        for run_ending in [false, true] {
            let entries = run_ending.then(|| ProjectionBatch {
                customer_id: "c".into(),
                after_seq: 4,
                totals_before: Default::default(),
                entries: vec![],
                check: vec![],
                pause_ms: 0,
            });
            let noticed = Noticed { value: crate::domain::Tier::Gold, run_ending, entries };
            let payloads = converter.to_payloads(&ctx, &noticed).await.unwrap();
            let plain = converter.to_payloads(&ctx, &crate::domain::Tier::Gold).await.unwrap();
            assert_eq!(payloads[0].data, plain[0].data, "the same JSON as without the notice");
            assert_eq!(payloads[0].metadata.contains_key(RUN_ENDING), run_ending);
            assert_eq!(payloads[0].metadata.contains_key(ENTRIES), run_ending);
            let back: Noticed<crate::domain::Tier> = converter.from_payloads(&ctx, payloads.clone()).await.unwrap();
            assert_eq!(back, noticed);
            // A client that knows nothing of the notice reads the result as before.
            let tier: crate::domain::Tier = converter.from_payloads(&ctx, payloads).await.unwrap();
            assert_eq!(tier, crate::domain::Tier::Gold);
        }
        // A result recorded before the notice existed reads as no notice.
        let plain = converter.to_payloads(&ctx, &crate::domain::Tier::Gold).await.unwrap();
        let back: Noticed<crate::domain::Tier> = converter.from_payloads(&ctx, plain).await.unwrap();
        assert!(!back.run_ending);
    }

    #[tokio::test]
    async fn a_unit_payload_decodes_as_nothing() {
        let unit = DataConverter::default().to_payloads(&SerializationContextData::None, &()).await.unwrap();
        let decoded: Nullable<crate::domain::Totals> =
            DataConverter::default().from_payloads(&SerializationContextData::None, unit).await.unwrap();
        assert_eq!(decoded, Nullable(None));
    }
}
