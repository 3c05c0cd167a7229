//! What a control record came to: done with an answer, or refused with a named reason. Stored
//! under `control/{seq}` for the HTTP handler waiting on it (and kept, so that the request
//! sent again gets the same answer); only `http/error.rs` turns a refusal into a status code.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Why domain code refused a request: the record is applied and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// What the request names does not exist (an unknown ticket, an erased contact).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the state (a merge of a contact with itself).
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but names something unusable (an unknown status).
    #[error("{0}")]
    Invalid(String),
    /// A request that reached code that cannot apply it: a bug, not the caller's due.
    #[error("{0}")]
    Internal(String),
}

/// What a control record came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Stored", try_from = "Stored")]
pub enum ControlOutcome {
    /// Applied; the handler answers with this body.
    Done(Value),
    Refused(Refusal),
}

/// The stored shape, `{"status": 200, "body": ...}`, as written before refusals had names:
/// the status says which refusal (404, 409, 422, else internal) and the body's `error` its
/// message, so answers stored by earlier versions read back the same.
#[derive(Serialize, Deserialize)]
struct Stored {
    status: u16,
    body: Value,
}

impl From<ControlOutcome> for Stored {
    fn from(outcome: ControlOutcome) -> Stored {
        let (status, error) = match outcome {
            ControlOutcome::Done(body) => return Stored { status: 200, body },
            ControlOutcome::Refused(Refusal::NotFound(error)) => (404, error),
            ControlOutcome::Refused(Refusal::Conflict(error)) => (409, error),
            ControlOutcome::Refused(Refusal::Invalid(error)) => (422, error),
            ControlOutcome::Refused(Refusal::Internal(error)) => (500, error),
        };
        Stored {
            status,
            body: json!({ "error": error }),
        }
    }
}

impl TryFrom<Stored> for ControlOutcome {
    type Error = String;

    fn try_from(Stored { status, body }: Stored) -> Result<ControlOutcome, String> {
        if (200..300).contains(&status) {
            return Ok(ControlOutcome::Done(body));
        }
        let error = body["error"].as_str().unwrap_or_default().to_owned();
        Ok(ControlOutcome::Refused(match status {
            404 => Refusal::NotFound(error),
            409 => Refusal::Conflict(error),
            400..=499 => Refusal::Invalid(error),
            _ => Refusal::Internal(error),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_stored_before_refusals_had_names_still_decode() {
        let old = |text: &str| serde_json::from_str::<ControlOutcome>(text).unwrap();
        assert_eq!(
            old(r#"{"status":200,"body":{"ticket":"T1"}}"#),
            ControlOutcome::Done(json!({ "ticket": "T1" }))
        );
        assert_eq!(
            old(r#"{"status":404,"body":{"error":"no ticket \"T9\"","code":"refused"}}"#),
            ControlOutcome::Refused(Refusal::NotFound("no ticket \"T9\"".into()))
        );
        assert_eq!(
            old(r#"{"status":409,"body":{"error":"same contact","code":"conflict"}}"#),
            ControlOutcome::Refused(Refusal::Conflict("same contact".into()))
        );
        assert_eq!(
            old(r#"{"status":422,"body":{"error":"owner: unknown user","code":"unprocessable"}}"#),
            ControlOutcome::Refused(Refusal::Invalid("owner: unknown user".into()))
        );
    }

    #[test]
    fn outcomes_round_trip_in_the_stored_shape() {
        for outcome in [
            ControlOutcome::Done(json!({ "status": "applied" })),
            ControlOutcome::Refused(Refusal::NotFound("no contact c1".into())),
            ControlOutcome::Refused(Refusal::Conflict("already one".into())),
            ControlOutcome::Refused(Refusal::Invalid("status: unknown".into())),
            ControlOutcome::Refused(Refusal::Internal("a bug".into())),
        ] {
            let stored = serde_json::to_value(&outcome).unwrap();
            assert!(stored["status"].is_u64() && stored.get("body").is_some());
            assert_eq!(
                serde_json::from_value::<ControlOutcome>(stored).unwrap(),
                outcome
            );
        }
    }
}
