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

mod images;
pub mod in_cluster;
mod register;
mod server;

pub use images::{CONFIGURATION as IMAGE_STAND_IN, ImageStandIn};

pub use register::{Registration, captured_hook, register_captured, register_captured_crd};
pub use server::{Answer, InCluster, Record, WebhookServer, caller_timeout_ms, review_response};

pub use crate::behaviour::{Behaviour, BehaviourSpec, WebhookKind};

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
