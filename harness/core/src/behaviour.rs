//! How a sample webhook behaves: the vocabulary scenario files use and the webhook
//! server acts on (a leaf module, so `scenario` and `webhook` do not depend on each
//! other).

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

    pub fn deny_message(&self, webhook: &str) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("denied by preflight sample webhook {webhook}"))
    }
}
