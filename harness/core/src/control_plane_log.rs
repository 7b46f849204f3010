//! What the control plane's logs and audit log say about objects: the garbage
//! collector's "error syncing item" lines, the API server's and controller manager's
//! lines about webhooks and the collector's informers, and the audit log's refused
//! DELETEs, as typed [`Evidence`] indexed by the object each names. Text in, evidence
//! out: the engine reads the logs, this decides what they say.

use crate::evidence::{Component, Evidence, EvidenceLog, ObjectRef};
use crate::gc::{GC_PROCEEDING, GC_SYNCED, GC_WAITING};

/// The evidence in the text of the control plane's logs (`(component, text)`) and
/// audit log: what [`log_evidence`] reads, without the cluster. The garbage
/// collector's errors become [`Evidence::GcCouldNotDelete`] of the object they name.
pub fn evidence_from(logs: &[(&str, String)], audit: Option<&str>) -> EvidenceLog {
    let mut out = EvidenceLog::default();
    for (name, text) in logs {
        let Some(component) = Component::from_name(name) else {
            continue;
        };
        for line in text.lines() {
            if let Some(gc) = gc_could_not_delete(line) {
                out.push(gc);
            } else if explains(component, line) {
                out.push(Evidence::LogLine {
                    component,
                    line: line.chars().take(400).collect(),
                });
            }
        }
    }
    if let Some(text) = audit {
        out.extend(text.lines().filter_map(audit_refusal));
    }
    out
}

/// Whether a log line of `component` is about webhooks or the garbage collector's
/// informers: what can explain a leftover.
fn explains(component: Component, line: &str) -> bool {
    let kcm = component == Component::KubeControllerManager;
    line.contains("failed calling webhook")
        || line.contains("conversion webhook")
        || (kcm
            && (line.contains(GC_WAITING)
                || line.contains(GC_SYNCED)
                || line.contains(GC_PROCEEDING)))
        || (kcm
            && line.contains("garbagecollector")
            && (line.contains("timed out")
                || line.contains("unable to sync")
                || line.contains("failed to sync")))
}

/// An audit event of a DELETE that the API server refused, as evidence about the
/// object (rendered `kube-apiserver audit: USER DELETE resource namespace/name: CODE
/// message`).
pub fn audit_refusal(line: &str) -> Option<Evidence> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["verb"] != "delete" || event["stage"] != "ResponseComplete" {
        return None;
    }
    // preflight's own server-side dry runs and probes are not what happened to the
    // object: a dry run in the query string, or in the DeleteOptions body (kube-rs sends
    // it there; the policy records it at `Request` level).
    let in_body = event["requestObject"]["dryRun"]
        .as_array()
        .is_some_and(|d| !d.is_empty());
    if in_body
        || event["requestURI"]
            .as_str()
            .is_some_and(|u| u.contains("dryRun="))
    {
        return None;
    }
    let code = event["responseStatus"]["code"].as_i64()?;
    if code < 400 || code == 404 {
        return None;
    }
    let obj = &event["objectRef"];
    let text = |v: &serde_json::Value| v.as_str().map(String::from);
    Some(Evidence::AuditRefusal {
        object: ObjectRef {
            kind: None,
            resource: Some(text(&obj["resource"])?),
            namespace: text(&obj["namespace"]).filter(|n| !n.is_empty()),
            name: text(&obj["name"]).unwrap_or_default(),
        },
        user: text(&event["user"]["username"]).unwrap_or_else(|| "?".into()),
        code,
        message: event["responseStatus"]["message"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
    })
}

/// A garbage collector `error syncing item` line, as evidence that it could not
/// delete the object the line names.
pub fn gc_could_not_delete(line: &str) -> Option<Evidence> {
    if !line.contains("error syncing item") {
        return None;
    }
    let field = |key: &str| -> Option<&str> {
        let start = line.find(&format!("{key}:\""))? + key.len() + 2;
        let rest = &line[start..];
        Some(&rest[..rest.find('"')?])
    };
    let (kind, name) = (field("Kind")?, field("Name")?);
    let ns = field("Namespace").unwrap_or("");
    let error = line.rsplit_once("}: ").map(|(_, e)| e).unwrap_or("");
    Some(Evidence::GcCouldNotDelete {
        object: ObjectRef {
            kind: Some(kind.to_string()),
            resource: None,
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.to_string(),
        },
        error: error.to_string(),
    })
}

/// A garbage collector `error syncing item` line condensed to `kube-controller-manager:
/// garbage collector could not delete Kind namespace/name: error`.
pub fn gc_error(line: &str) -> Option<String> {
    gc_could_not_delete(line).map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/pf-a/pods/web-1","verb":"delete","user":{"username":"system:serviceaccount:kube-system:generic-garbage-collector"},"objectRef":{"resource":"pods","namespace":"pf-a","name":"web-1","apiVersion":"v1"},"responseStatus":{"code":500,"message":"Internal error occurred: failed calling webhook \"delete-guard\""}}"#;

    #[test]
    fn audit_events_of_refused_deletes_become_evidence() {
        assert_eq!(
            audit_refusal(REFUSED).map(|e| e.to_string()).as_deref(),
            Some(
                "kube-apiserver audit: system:serviceaccount:kube-system:generic-garbage-collector DELETE pods pf-a/web-1: 500 Internal error occurred: failed calling webhook \"delete-guard\""
            )
        );
        let dry_run = REFUSED.replace("web-1\",\"verb", "web-1?dryRun=All\",\"verb");
        assert_eq!(audit_refusal(&dry_run), None, "dry runs are probes");
        let in_body = REFUSED.replace(
            "\"verb\":\"delete\",",
            "\"verb\":\"delete\",\"requestObject\":{\"kind\":\"DeleteOptions\",\"dryRun\":[\"All\"]},",
        );
        assert_ne!(in_body, REFUSED);
        assert_eq!(audit_refusal(&in_body), None, "a dry run in DeleteOptions");
        let real = REFUSED.replace(
            "\"verb\":\"delete\",",
            "\"verb\":\"delete\",\"requestObject\":{\"kind\":\"DeleteOptions\",\"propagationPolicy\":\"Background\"},",
        );
        assert!(audit_refusal(&real).is_some(), "a real DELETE with options");
        let ok = REFUSED.replace("\"code\":500", "\"code\":200");
        assert_eq!(audit_refusal(&ok), None);
        let gone = REFUSED.replace("\"code\":500", "\"code\":404");
        assert_eq!(audit_refusal(&gone), None);
        assert_eq!(audit_refusal("not json"), None);
    }
}
