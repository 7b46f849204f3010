//! Twins: a live cluster's Helm releases and admission surface, captured (reads only)
//! into a directory that can be committed to a repository and replayed on the source
//! and target versions without any credential to the live cluster.
//!
//! * [`capture`]: reads the cluster and writes the twin (`preflight capture`).
//! * [`replay`]: the twin on fresh control planes, healthy and per failing webhook.
//! * [`release`]: Helm 3's release storage (`helm.sh/release.v1` Secrets or
//!   ConfigMaps) decoded, and a release's chart written back as a folder.
//! * [`values`]: redaction of user-supplied values before they are written anywhere.
//! * [`scrub`]: what values redaction cannot reach: Secrets in rendered manifests,
//!   PEM blocks in any captured file.
//! * [`backends`]: the captured webhooks' backends, served inside a rehearsal's cluster.
//! * [`health`]: each captured webhook's health now (reads only), and the workload
//!   behind it.
//! * [`stored`]: custom resources' metadata, captured and recreated.
//! * [`nodes`]: node pools as captured.
//! * [`manifest`]: `capture.json` (what was read, lacked, redacted) and `twin.yaml`.
//! * [`load`]: the captured files (`cluster/`) read into validated values, with
//!   `file:line:column` errors, under reading budgets: replay gets nothing unchecked.

pub mod backends;
pub mod capture;
pub mod health;
pub mod load;
pub mod manifest;
pub mod nodes;
pub mod release;
pub mod replay;
pub mod scrub;
pub mod stored;
pub mod values;
