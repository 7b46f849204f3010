//! The sample webhook server: one in-process server for many named webhooks, each a
//! validating, mutating or CRD conversion endpoint whose behaviour a scenario can
//! change at any step (`allow`, `deny`, `delay`, `error`, `malformed`, `unreachable`).
//!
//! Every webhook listens on its own loopback port with TLS, under a CA generated for
//! the run, so `unreachable` is real: its listener is shut down and nothing answers at
//! its address, exactly like a webhook whose pods are gone. Every request received is
//! recorded (time, webhook, operation, resource, object, requesting user, dry-run flag,
//! answer, latency) in memory and in `requests.jsonl`: the evidence that later explains
//! leftovers, such as the garbage collector's DELETEs being refused.

mod register;
mod server;

pub use register::Registration;
pub use server::{Answer, Record, WebhookServer};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a webhook is called for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WebhookKind {
    Validating,
    Mutating,
    Conversion,
}

/// How a webhook answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Behaviour {
    /// Admit (mutating: add an annotation on CREATE/UPDATE; conversion: convert).
    Allow,
    /// Refuse, with a message.
    Deny,
    /// Answer only after a delay longer than the caller's timeout.
    Delay,
    /// HTTP 500.
    Error,
    /// HTTP 200 with a body that is not a review.
    Malformed,
    /// Nothing listens at the webhook's address.
    Unreachable,
}

/// A behaviour with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehaviourSpec {
    pub behaviour: Behaviour,
    /// The refusal message for `deny`.
    pub message: Option<String>,
    /// How long `delay` waits.
    pub delay: Option<Duration>,
}

impl BehaviourSpec {
    pub fn new(behaviour: Behaviour) -> Self {
        BehaviourSpec {
            behaviour,
            message: None,
            delay: None,
        }
    }

    pub(crate) fn deny_message(&self, webhook: &str) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("denied by preflight sample webhook {webhook}"))
    }
}

/// Errors of the webhook server.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook named `{0}`")]
    Unknown(String),
    #[error("webhook `{name}`: cannot listen on {addr}: {source}")]
    Listen {
        name: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook certificates: {0}")]
    Tls(String),
    #[error("registering webhook `{name}`: {detail}")]
    Register { name: String, detail: String },
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
