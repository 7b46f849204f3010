//! The live probe's answers, typed: what the API server said to a dry-run DELETE,
//! which webhook its answer names, and what that proves about one webhook.
//!
//! The API server names the webhook that refused: `failed calling webhook "NAME": …`
//! (the call failed or timed out), `admission webhook "NAME" denied the request…`,
//! `admission webhook "NAME" does not support dry run`. Validating webhooks are called
//! together and only the first refusal is returned, so an answer proves something only
//! about the webhook it names.

use super::selection::Selection;

pub use crate::refusal::{Refusal, RefusalKind, parse_refusal};

/// What the API server answered a dry-run DELETE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Admitted,
    /// Refused by the webhook the answer names.
    Refused {
        refusal: Refusal,
        message: String,
    },
    /// Any other error (no webhook named: RBAC, not found, …).
    Error {
        code: Option<u16>,
        message: String,
    },
}

impl Answer {
    pub fn from_result(result: Result<(), kube::Error>) -> Answer {
        match result {
            Ok(()) => Answer::Admitted,
            Err(kube::Error::Api(e)) => match parse_refusal(&e.message) {
                Some(refusal) => Answer::Refused {
                    refusal,
                    message: e.message.clone(),
                },
                None => Answer::Error {
                    code: Some(e.code),
                    message: e.message.clone(),
                },
            },
            Err(e) => Answer::Error {
                code: None,
                message: e.to_string(),
            },
        }
    }

    /// `admitted`, the refusal's kind, or `error`.
    pub fn outcome(&self) -> String {
        match self {
            Answer::Admitted => "admitted".into(),
            Answer::Refused { refusal, .. } => refusal.kind.to_string(),
            Answer::Error { .. } => "error".into(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Answer::Admitted => "",
            Answer::Refused { message, .. } | Answer::Error { message, .. } => message,
        }
    }
}

/// What one probe proves about one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The answer names this webhook: it refuses the DELETE now.
    Refused(RefusalKind),
    /// The object is selected without conditions and the DELETE was admitted: the
    /// webhook was called and let it through.
    Admitted,
    /// Nothing proven, and why.
    Unknown(String),
}

/// What the answer to a DELETE of an object `selection` describes proves about
/// `webhook`.
pub fn judge(webhook: &str, selection: &Selection, answer: &Answer) -> Verdict {
    match (answer, selection) {
        (Answer::Refused { refusal, .. }, _) if refusal.webhook == webhook => match refusal.kind {
            RefusalKind::DryRunUnsupported => Verdict::Unknown(
                "it refuses every dry run (its sideEffects), so a dry-run probe cannot show what it answers the garbage collector".into(),
            ),
            kind => Verdict::Refused(kind),
        },
        (Answer::Refused { refusal, .. }, _) => Verdict::Unknown(format!(
            "the answer names another webhook, {} ({}): the API server returns one refusal, so this one may or may not have refused",
            refusal.webhook, refusal.kind
        )),
        (Answer::Admitted, Selection::Selected) => Verdict::Admitted,
        (Answer::Admitted, Selection::IfConditionsHold) => Verdict::Unknown(
            "admitted, but its matchConditions (CEL, not evaluated here) may have kept the API server from calling it".into(),
        ),
        (Answer::Admitted, Selection::Undecidable(why)) => {
            Verdict::Unknown(format!("admitted, but whether it was called is unknown: {why}"))
        }
        (Answer::Admitted, Selection::NotSelected) => {
            Verdict::Unknown("admitted, but it does not select this object".into())
        }
        (Answer::Error { code, message }, _) => Verdict::Unknown(format!(
            "the API server answered {}{message}, naming no webhook",
            code.map(|c| format!("{c} ")).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_attributed_to_the_webhook_the_answer_names() {
        let cases: &[(&str, Option<(&str, RefusalKind)>)] = &[
            (
                r#"Internal error occurred: failed calling webhook "unreachable.example.com": failed to call webhook: Post "https://127.0.0.1:40123/validate?timeout=10s": dial tcp 127.0.0.1:40123: connect: connection refused"#,
                Some(("unreachable.example.com", RefusalKind::WebhookFailed)),
            ),
            (
                r#"Internal error occurred: failed calling webhook "slow.example.com": failed to call webhook: Post "https://10.0.0.5:443/validate?timeout=2s": context deadline exceeded"#,
                Some(("slow.example.com", RefusalKind::TimedOut)),
            ),
            (
                r#"admission webhook "guard.example.com" denied the request: deletes are frozen"#,
                Some(("guard.example.com", RefusalKind::Denied)),
            ),
            (
                r#"admission webhook "guard.example.com" denied the request without explanation"#,
                Some(("guard.example.com", RefusalKind::Denied)),
            ),
            (
                r#"admission webhook "audit.example.com" does not support dry run"#,
                Some(("audit.example.com", RefusalKind::DryRunUnsupported)),
            ),
            (
                r#"Internal error occurred: failed calling webhook "we\"ird": EOF"#,
                Some((r#"we"ird"#, RefusalKind::WebhookFailed)),
            ),
            // The message a webhook writes may itself mention another webhook: the
            // API server's phrase comes first and wins.
            (
                r#"admission webhook "a.example.com" denied the request: failed calling webhook "b.example.com" upstream"#,
                Some(("a.example.com", RefusalKind::Denied)),
            ),
            (
                r#"pods "web-0" is forbidden: User "x" cannot delete resource "pods""#,
                None,
            ),
            (r#"pods "web-0" not found"#, None),
            (r#"admission webhook "truncated"#, None),
        ];
        for (message, want) in cases {
            let got = parse_refusal(message).map(|r| (r.webhook, r.kind));
            let want = want.map(|(w, k)| (w.to_string(), k));
            assert_eq!(got, want, "{message}");
        }
    }

    fn refused(webhook: &str, kind: RefusalKind) -> Answer {
        Answer::Refused {
            refusal: Refusal {
                webhook: webhook.into(),
                kind,
            },
            message: String::new(),
        }
    }

    #[test]
    fn an_answer_proves_something_only_about_the_webhook_it_names() {
        use RefusalKind::*;
        let unknown = |v: &Verdict| matches!(v, Verdict::Unknown(_));
        type Check = fn(&Verdict) -> bool;
        let cases: Vec<(&str, Selection, Answer, Check)> = vec![
            (
                "names it",
                Selection::Selected,
                refused("me", WebhookFailed),
                |v| *v == Verdict::Refused(WebhookFailed),
            ),
            (
                "names it, conditions",
                Selection::IfConditionsHold,
                refused("me", Denied),
                |v| *v == Verdict::Refused(Denied),
            ),
            (
                "names it, timed out",
                Selection::Selected,
                refused("me", TimedOut),
                |v| *v == Verdict::Refused(TimedOut),
            ),
            (
                "names another",
                Selection::Selected,
                refused("other", WebhookFailed),
                unknown,
            ),
            (
                "dry run unsupported",
                Selection::Selected,
                refused("me", DryRunUnsupported),
                unknown,
            ),
            (
                "admitted, selected",
                Selection::Selected,
                Answer::Admitted,
                |v| *v == Verdict::Admitted,
            ),
            (
                "admitted, conditions",
                Selection::IfConditionsHold,
                Answer::Admitted,
                unknown,
            ),
            (
                "admitted, undecidable",
                Selection::Undecidable("x".into()),
                Answer::Admitted,
                unknown,
            ),
            (
                "other error",
                Selection::Selected,
                Answer::Error {
                    code: Some(403),
                    message: "forbidden".into(),
                },
                unknown,
            ),
        ];
        for (what, sel, answer, ok) in cases {
            let v = judge("me", &sel, &answer);
            assert!(ok(&v), "{what}: {v:?}");
        }
        let Verdict::Unknown(why) = judge(
            "me",
            &Selection::Selected,
            &refused("other.example.com", WebhookFailed),
        ) else {
            unreachable!()
        };
        assert!(why.contains("other.example.com (webhook-failed)"), "{why}");
    }
}
