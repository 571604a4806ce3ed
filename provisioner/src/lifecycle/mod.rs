//! The node lifecycle engine: one handler per state (`handlers/`), SLAs and limits (`config`), remediation
//! policy as data (`policy`), the engine's durable per-node record (`work`), the worker pool (`engine`), the
//! agent report endpoint (`reports`), and the way into installed nodes (`access`, `ssh`).

pub mod access;
pub mod config;
pub mod connector;
pub mod ctx;
pub mod engine;
pub mod gates;
mod handlers;
pub mod outcome;
pub mod policy;
pub mod reports;
pub mod sessions;
pub mod ssh;
mod technician;
pub mod work;

pub use access::{AccessError, NodeAccess, NodeHost, PostImageFacts};
pub use config::{EngineConfig, Limits};
pub use connector::{BmcConnector, InventoryBmcs, NodeBmcError, connect_node};
pub use ctx::{Ctx, Gates};
pub use engine::Engine;
pub use handlers::fingerprint;
pub use outcome::{Failure, FailureClass, Outcome};
pub use policy::{Action, Policy};
pub use reports::report_router;
pub use technician::{RetestFrom, reimage, repair_done, retest};
pub use work::Work;
