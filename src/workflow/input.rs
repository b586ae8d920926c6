//! The workflow input: `null` (or nothing at all) for a new account, the
//! carried `LoyaltyState` after continue-as-new.
//!
//! The SDK's `Option<T>` needs exactly one payload, but a client written from
//! the reference guide starts the workflow with no argument, i.e. zero
//! payloads. This wrapper accepts both, so such clients can open accounts.

use temporalio_common::data_converters::{
    PayloadConversionError, SerializationContext, TemporalDeserializable, TemporalSerializable,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

use crate::domain::LoyaltyState;

const ENCODING: &str = "encoding";
const JSON: &[u8] = b"json/plain";
const NULL: &[u8] = b"binary/null";

/// Input of `LoyaltyEntityWorkflow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowInput(pub Option<LoyaltyState>);

impl WorkflowInput {
    /// The input that opens a new account.
    pub fn new_account() -> Self {
        Self(None)
    }
}

impl TemporalSerializable for WorkflowInput {
    fn to_payload(&self, _: &SerializationContext<'_>) -> Result<Payload, PayloadConversionError> {
        let (encoding, data) = match &self.0 {
            None => (NULL, Vec::new()),
            Some(state) => {
                (JSON, serde_json::to_vec(state).map_err(|e| PayloadConversionError::EncodingError(Box::new(e)))?)
            }
        };
        Ok(Payload { metadata: [(ENCODING.to_owned(), encoding.to_vec())].into(), data, external_payloads: vec![] })
    }
}

impl TemporalDeserializable for WorkflowInput {
    fn from_payload(_: &SerializationContext<'_>, payload: Payload) -> Result<Self, PayloadConversionError> {
        match payload.metadata.get(ENCODING).map(Vec::as_slice) {
            Some(NULL) => Ok(Self(None)),
            Some(JSON) => serde_json::from_slice(&payload.data)
                .map(Self)
                .map_err(|e| PayloadConversionError::EncodingError(Box::new(e))),
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
        assert_eq!(decode(vec![]).await.unwrap(), WorkflowInput(None));
        assert_eq!(decode(encode(&WorkflowInput::new_account()).await).await.unwrap(), WorkflowInput(None));
        let json_null = Payload {
            metadata: [(ENCODING.into(), JSON.to_vec())].into(),
            data: b"null".to_vec(),
            external_payloads: vec![],
        };
        assert_eq!(decode(vec![json_null]).await.unwrap(), WorkflowInput(None));
    }

    #[tokio::test]
    async fn carried_state_round_trips_as_plain_json() {
        let input = WorkflowInput(Some(LoyaltyState::open("c1")));
        let payloads = encode(&input).await;
        assert_eq!(payloads[0].metadata.get(ENCODING).map(Vec::as_slice), Some(JSON));
        let json: serde_json::Value = serde_json::from_slice(&payloads[0].data).unwrap();
        assert_eq!(json["customer_id"], "c1");
        assert_eq!(decode(payloads).await.unwrap(), input);
    }
}
