//! What an API server's error means (see [`preflight_core::api_error`], which reads its
//! texts): the decisions on a client's error, which carry its `Status`.

pub use preflight_core::api_error::*;

/// Whether the API server refused the request to these credentials (see [`is_denial`]).
pub fn denied(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if is_denial(s.code))
}

/// Whether a request failed because the API server could not convert through a CRD's
/// conversion webhook.
///
/// The API server's messages for it come from
/// `k8s.io/apiextensions-apiserver/pkg/apiserver/conversion/webhook_converter.go`
/// (`conversion webhook for <kind> failed: <cause>`, `conversion webhook for <kind>
/// returned ...`): plain errors that reach the client as a `Status` with code 500 and
/// an empty reason, like any other internal error. No typed field says "conversion",
/// so the message is read, and only an API server's `Status` message is.
pub fn conversion_webhook_failed(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if says_conversion_webhook_failed(&s.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn refusals_are_decided_by_status_code() {
        assert!(denied(&api(
            403,
            "pods is forbidden: User \"x\" cannot list"
        )));
        assert!(denied(&api(401, "Unauthorized")));
        // The word alone does not make a refusal.
        assert!(!denied(&api(500, "forbidden")));
        assert!(!denied(&api(404, "not found")));
    }

    #[test]
    fn conversion_failures_are_read_from_the_api_servers_message_only() {
        assert!(conversion_webhook_failed(&api(
            500,
            "conversion webhook for example.com/v2, Kind=Widget failed: Post \"https://w.x.svc:443/convert\": connection refused"
        )));
        assert!(!conversion_webhook_failed(&api(
            500,
            "etcdserver: request timed out"
        )));
        assert!(!conversion_webhook_failed(
            &kube::Error::LinesCodecMaxLineLengthExceeded
        ));
    }
}
