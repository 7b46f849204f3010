//! What an API server's error means, decided on the `Status` it answers with (its HTTP
//! code) wherever that carries the answer, and on its message only where the API
//! server gives nothing else: failures of a CRD's conversion webhook reach clients as
//! a plain Go error turned into a `Status` with code 500 and no reason, so only the
//! message tells them from any other internal error; errors the garbage collector
//! logged reach preflight as text only. Each such text match is here, in one function
//! that names the upstream message it reads.

/// Whether an HTTP status is a refusal to the credentials: 401 (not authenticated) or
/// 403 (not authorised), as opposed to a failure of what serves the request.
pub fn is_denial(code: u16) -> bool {
    code == 401 || code == 403
}

/// Whether an API server's error text (a `Status` message, or the error the garbage
/// collector logged for an object) is the conversion webhook failure of
/// `conversion_webhook_failed` (in the engine, on a client's error): where the text reached preflight through a log, it is
/// all there is.
pub fn says_conversion_webhook_failed(text: &str) -> bool {
    text.contains("conversion webhook")
}

/// Whether an API server's error text says it could not call an admission webhook.
///
/// The text is `failed calling webhook "<name>": <cause>` from
/// `k8s.io/apiserver/pkg/util/webhook/error.go` (`ErrCallingWebhook`); it reaches
/// preflight inside the garbage collector's logged error for an object, where no status
/// code survives.
pub fn says_webhook_call_failed(text: &str) -> bool {
    text.contains("failed calling webhook")
}

/// Whether the API server's message about a failed webhook call says the webhook
/// could not be reached at all (as opposed to the webhook answering with an error).
///
/// The API server wraps the cause of a failed call in its message as text: Go's
/// network errors (`connect: connection refused`, `i/o timeout`, `no such host`),
/// `context deadline exceeded` when the call timed out, and the service resolver's
/// `service "x" not found` / `no endpoints available for service "x"`. The `Status`
/// around them has code 500 for every cause, so these phrases are the only signal.
pub fn webhook_unreachable(message: &str) -> bool {
    [
        "connection refused",
        "no endpoints available",
        "not found",
        "i/o timeout",
        "context deadline exceeded",
        "no such host",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_errors_name_the_webhook_that_failed() {
        let gc = "delete of ReplicaSet pf/web failed: Internal error occurred: failed calling webhook \"deny.preflight.dev\": Post \"https://x\": EOF";
        assert!(says_webhook_call_failed(gc));
        assert!(!says_conversion_webhook_failed(gc));
        let conv = "conversion webhook for example.com/v2, Kind=Widget failed: EOF";
        assert!(says_conversion_webhook_failed(conv));
        assert!(!says_webhook_call_failed(conv));
    }

    #[test]
    fn unreachable_webhooks_are_told_from_failing_ones() {
        assert!(webhook_unreachable(
            "conversion webhook for example.com/v2, Kind=Widget failed: Post \"https://w.x.svc:443/convert?timeout=30s\": dial tcp 10.0.0.1:443: connect: connection refused"
        ));
        assert!(webhook_unreachable(
            "failed calling webhook: service \"w\" not found"
        ));
        assert!(!webhook_unreachable(
            "conversion webhook for example.com/v2, Kind=Widget failed: the server returned 500: boom"
        ));
    }
}
