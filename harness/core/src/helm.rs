//! What one `helm` call did, as recorded (the engine's `helm` module runs the CLI), and
//! the objects of a manifest helm printed.

use serde::Serialize;

use crate::scenario::{HelmAction, HelmDryRun};
use crate::yaml_stream::{self, DocumentError};

/// One helm invocation and what it said.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HelmRun {
    /// The command line, with paths shortened (no credentials are ever on it).
    pub command: String,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    /// The scenario step this call carried out (`None` for `helm template`, `helm get
    /// manifest`, `helm pull`): what reports and replays decide on, never the command
    /// line's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<HelmCall>,
}

/// The scenario step a helm call carried out.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HelmCall {
    pub action: HelmAction,
    pub dry_run: HelmDryRun,
    pub release: String,
}

impl HelmRun {
    /// Whether this was a real `helm uninstall` (not a dry run): the call whose exit
    /// code helm's "success" is judged by.
    pub fn is_real_uninstall(&self) -> bool {
        self.step
            .as_ref()
            .is_some_and(|c| c.action == HelmAction::Uninstall && c.dry_run == HelmDryRun::None)
    }
}

/// The objects of a multi-document YAML manifest (empty documents and values that are
/// not mappings dropped). A manifest is Helm's own output: a document that does not
/// parse means the release cannot be read, so it is an error rather than skipped.
pub fn split_manifest(text: &str) -> Result<Vec<serde_json::Value>, DocumentError> {
    let mut out = Vec::new();
    for doc in yaml_stream::documents(text) {
        let v = doc.into_value()?;
        if v.is_object() {
            out.push(v);
        }
    }
    Ok(out)
}
