//! The "twin" of a live cluster's Helm releases, for the future `preflight capture`
//! command: it reads each release as Helm stored it, writes a chart folder that helm
//! can install again, and the user-supplied values with their credentials taken out,
//! so that the twin can be committed to a repository and replayed on a new version.
//!
//! * [`release`]: Helm 3's release storage (`helm.sh/release.v1` Secrets or
//!   ConfigMaps) decoded, and a release's chart written back as a folder.
//! * [`values`]: redaction of user-supplied values before they are written anywhere.

pub mod release;
pub mod values;
