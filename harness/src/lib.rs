//! preflight: tells a platform team, before a Kubernetes upgrade, whether their Helm
//! releases still install and delete cleanly on the new version.
//!
//! Three crates, each on the ones below it:
//!
//! ```text
//! preflight         the command line, the twin (capture, replay), the audit
//!   preflight-engine  components, clusters, helm, webhooks, snapshots, the exercise engine, the runner, --accept files
//!     preflight-core    records and judgements: verdict, compare, policy, reports (no I/O)
//! ```
//!
//! * [`twin`]: a live cluster's Helm releases and admission surface captured (reads
//!   only) into a directory that is replayed on source and target (`preflight capture`).
//! * [`audit`]: a live cluster read for what would break its upgrade (`preflight audit`).
//! * [`cli`]: one module per command.
//!
//! The engine's and the core's modules are re-exported here at the paths the whole
//! program uses (`preflight::cluster`, `preflight::verdict`, ...).

pub mod aks;
pub mod audit;
pub mod cli;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod twin;

pub use preflight_engine::*;
