//! The sample webhook server's review handling: an AdmissionReview or ConversionReview
//! body, as bytes, to the JSON it answers, for every kind of webhook, admitting and
//! refusing; and the API server's `?timeout=` parameter. No panic; an answer always
//! echoes the request's uid and says what it is.

#![no_main]

use libfuzzer_sys::fuzz_target;
use preflight::webhook::{WebhookKind, caller_timeout_ms, review_response};

fuzz_target!(|data: &[u8]| {
    // The first line doubles as a query string (it is rarely JSON on its own).
    if let Ok(text) = std::str::from_utf8(data) {
        let query = text.split('\n').next().unwrap_or_default();
        let _ = caller_timeout_ms(Some(query));
    }
    let uid = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.pointer("/request/uid").cloned());
    for kind in [
        WebhookKind::Validating,
        WebhookKind::Mutating,
        WebhookKind::Conversion,
    ] {
        for patch in [false, true] {
            for verdict in [Ok("hook"), Err("refused <by> \"fuzz\"")] {
                let Some(answer) = review_response(kind, patch, data, verdict) else {
                    continue;
                };
                let expected = if kind == WebhookKind::Conversion {
                    "ConversionReview"
                } else {
                    "AdmissionReview"
                };
                assert_eq!(answer["kind"], expected, "{answer}");
                assert_eq!(Some(&answer["response"]["uid"]), uid.as_ref(), "{answer}");
                serde_json::to_vec(&answer).expect("the answer serialises");
            }
        }
    }
});
