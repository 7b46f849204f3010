//! Which webhook refused a request, and how, read from the API server's answer (a leaf
//! module: the dry runs, the verification probe and `preflight audit` all credit a
//! refusal only to the webhook the answer names).

use std::fmt;

use serde::Serialize;

/// How a webhook refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The call failed (unreachable, TLS, HTTP error, malformed answer) and the webhook
    /// fails closed.
    WebhookFailed,
    /// The call did not finish within the webhook's timeout.
    TimedOut,
    /// The webhook answered `allowed: false`.
    Denied,
    /// The webhook has side effects and the request was a dry run: a real request
    /// would have called it.
    DryRunUnsupported,
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalKind::WebhookFailed => "webhook-failed",
            RefusalKind::TimedOut => "timed-out",
            RefusalKind::Denied => "denied",
            RefusalKind::DryRunUnsupported => "dry-run-unsupported",
        })
    }
}

/// A refusal, and the webhook the API server's answer names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub webhook: String,
    pub kind: RefusalKind,
}

/// The quoted name after `prefix` (Go's `%q`: `\"` and `\\` escaped).
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<(String, &'a str)> {
    let start = message.find(prefix)? + prefix.len();
    let rest = &message[start..];
    let mut name = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => name.push(chars.next()?.1),
            '"' => return Some((name, &rest[i + 1..])),
            c => name.push(c),
        }
    }
    None
}

/// The webhook an API server error message names, and how it refused; `None` when the
/// message names no webhook. The API server's own phrase comes first in its message;
/// a webhook's denial text after it may mention other webhooks and is not read.
pub fn parse_refusal(message: &str) -> Option<Refusal> {
    const FAILED: &str = "failed calling webhook \"";
    const ADMISSION: &str = "admission webhook \"";
    let failed_at = message.find(FAILED);
    let admission_at = message.find(ADMISSION);
    let failed_first = match (failed_at, admission_at) {
        (Some(f), Some(a)) => f < a,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => return None,
    };
    if failed_first {
        let (webhook, rest) = quoted_after(message, FAILED)?;
        let timed_out = ["context deadline exceeded", "Client.Timeout", "i/o timeout"]
            .iter()
            .any(|t| rest.contains(t));
        return Some(Refusal {
            webhook,
            kind: if timed_out {
                RefusalKind::TimedOut
            } else {
                RefusalKind::WebhookFailed
            },
        });
    }
    let (webhook, rest) = quoted_after(message, ADMISSION)?;
    let kind = if rest.starts_with(" denied the request") {
        RefusalKind::Denied
    } else if rest.starts_with(" does not support dry run") {
        RefusalKind::DryRunUnsupported
    } else {
        return None;
    };
    Some(Refusal { webhook, kind })
}
