//! Images substituted, as reports show them: each [`Substitution`] with every text the
//! cluster supplied redacted, and the sentence and lines all four formats share, so
//! that no renderer words the fact its own way. Substitutions are not findings: they
//! never change a verdict or an exit code.

use crate::images::Substitution;
use crate::redact::redact;

/// Why a run lists substituted images, and what that means for its verdict.
pub const WHY: &str = "These containers ran preflight's stand-in because no node held their image (kind nodes reach no registry), so the verdict covers scheduling, evictions and admission, not the application's own code.";

/// What a row that kept its image means (said when a run has one).
pub const SAME_IMAGE: &str = "Same image, pull policy only: the node held the image, and the container ran it as it is without asking a registry.";

/// The sentences a run's substitutions come with: [`WHY`], and [`SAME_IMAGE`] when a
/// container kept its image.
pub fn explained(subs: &[Substitution]) -> String {
    if subs.iter().any(pull_policy_only) {
        format!("{WHY} {SAME_IMAGE}")
    } else {
        WHY.to_string()
    }
}

/// The substitution with credentials removed from everything the cluster named (the
/// namespace, the workload, the container, both images and the changes).
pub fn redacted(s: &Substitution) -> Substitution {
    Substitution {
        namespace: redact(&s.namespace),
        workload: redact(&s.workload),
        container: redact(&s.container),
        image: redact(&s.image),
        replaced_by: redact(&s.replaced_by),
        changes: s.changes.iter().map(|c| redact(c)).collect(),
        pods: s.pods,
    }
}

/// Whether the container ran the image it names, with only its pull policy changed.
pub fn pull_policy_only(s: &Substitution) -> bool {
    s.replaced_by == s.image
}

/// What ran instead: the stand-in image, or `same image, pull policy only`.
pub fn ran_instead(s: &Substitution) -> String {
    if pull_policy_only(s) {
        "same image, pull policy only".to_string()
    } else {
        s.replaced_by.clone()
    }
}

/// `1 Pod`, `3 Pods`.
pub fn pods(s: &Substitution) -> String {
    format!("{} Pod{}", s.pods, if s.pods == 1 { "" } else { "s" })
}

/// The changes joined with `; `, or `none`.
pub fn changes(s: &Substitution) -> String {
    if s.changes.is_empty() {
        "none".to_string()
    } else {
        s.changes.join("; ")
    }
}

/// One line: `shop/Deployment/web container api: registry.example/api:2.4 ran
/// preflight/workload:r1 (2 Pods): listens on 8080 (answers 200)`.
pub fn line(s: &Substitution) -> String {
    let ran = if pull_policy_only(s) {
        "ran as it is, pull policy only".to_string()
    } else {
        format!("ran {}", s.replaced_by)
    };
    format!(
        "{}/{} container {}: {} {ran} ({}): {}",
        s.namespace,
        s.workload,
        s.container,
        s.image,
        pods(s),
        changes(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(image: &str, replaced_by: &str) -> Substitution {
        Substitution {
            namespace: "shop".into(),
            workload: "ReplicaSet/web-5d8f".into(),
            container: "api".into(),
            image: image.into(),
            replaced_by: replaced_by.into(),
            changes: vec!["listens on 8080 (answers 200)".into()],
            pods: 1,
        }
    }

    #[test]
    fn every_cluster_text_is_redacted() {
        let mut s = sub("corp.example/api:2?token=s3cr3t", "preflight/workload:r1");
        s.workload = "ReplicaSet/web password=hunter2".into();
        s.changes = vec!["Authorization: Bearer abc.def.ghi".into()];
        let r = redacted(&s);
        let all = format!("{r:?}");
        for secret in ["s3cr3t", "hunter2", "abc.def.ghi"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        assert_eq!(r.pods, 1);
        assert_eq!(r.replaced_by, "preflight/workload:r1");
    }

    #[test]
    fn a_kept_image_reads_as_pull_policy_only() {
        let stand_in = sub("corp.example/api:2", "preflight/workload:r1");
        let kept = sub("busybox:1.36", "busybox:1.36");
        assert_eq!(ran_instead(&stand_in), "preflight/workload:r1");
        assert_eq!(ran_instead(&kept), "same image, pull policy only");
        assert_eq!(explained(std::slice::from_ref(&stand_in)), WHY);
        assert!(explained(&[stand_in.clone(), kept.clone()]).ends_with(SAME_IMAGE));
        assert_eq!(
            line(&stand_in),
            "shop/ReplicaSet/web-5d8f container api: corp.example/api:2 ran preflight/workload:r1 (1 Pod): listens on 8080 (answers 200)"
        );
        assert!(line(&kept).contains("busybox:1.36 ran as it is, pull policy only (1 Pod)"));
    }
}
