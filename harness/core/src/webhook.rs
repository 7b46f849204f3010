//! What a test webhook was asked and what it answered, as recorded (the engine's
//! `webhook` module serves the webhooks).

use serde::Serialize;

pub use crate::behaviour::WebhookKind;

/// One request the server received, and what it answered.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// RFC 3339 time the request arrived.
    pub time: String,
    pub webhook: String,
    pub kind: WebhookKind,
    /// CREATE, UPDATE, DELETE, CONNECT, or CONVERT.
    pub operation: String,
    /// `group/version/resource` (conversion: `group/Kind`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The requesting user, e.g. `system:serviceaccount:kube-system:generic-garbage-collector`.
    pub user: Option<String>,
    pub dry_run: bool,
    pub answer: Answer,
    pub latency_ms: u64,
    /// How long the caller waits (the API server's `?timeout=` on every webhook call),
    /// in milliseconds, where the request said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_timeout_ms: Option<u64>,
    /// The caller hung up before the answer was sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller_gave_up: bool,
}

/// What the server answered.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Answer {
    Allowed,
    Converted,
    Denied {
        message: String,
    },
    /// An HTTP error status instead of a review.
    Error {
        status: u16,
    },
    /// HTTP 200 with a body that is not a review.
    Malformed,
    /// Allowed, but only after this long.
    Delayed {
        seconds: u64,
    },
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Allowed => f.write_str("allowed"),
            Answer::Converted => f.write_str("converted"),
            Answer::Denied { message } => write!(f, "denied: {message}"),
            Answer::Error { status } => write!(f, "error {status}"),
            Answer::Malformed => f.write_str("malformed"),
            Answer::Delayed { seconds } => write!(f, "allowed after {seconds}s"),
        }
    }
}

impl Record {
    /// Whether the caller was refused: a denial, an error or a malformed answer, or a
    /// delayed one that came after the caller's own timeout had passed (a delay the
    /// caller waited out is an answer, not a refusal; without the caller's timeout or
    /// its hanging up it is not counted).
    pub fn refused(&self) -> bool {
        match &self.answer {
            Answer::Allowed | Answer::Converted => false,
            Answer::Denied { .. } | Answer::Error { .. } | Answer::Malformed => true,
            Answer::Delayed { .. } => {
                self.caller_gave_up || self.caller_timeout_ms.is_some_and(|t| self.latency_ms >= t)
            }
        }
    }
}
