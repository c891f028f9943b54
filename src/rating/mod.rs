//! The rating core: every rule of the RULEBOOK, with no I/O.
//!
//! It knows nothing of tonic, Redis, files or the clock. Callers hand it validated
//! tenants and raw events with an explicit `now`, and store what it emits.

pub mod credits;
pub mod engine;
pub mod event;
pub mod ids;
pub mod ledger;
pub mod meter;
pub mod money;
pub mod outcome;
pub mod plan;
pub mod settings;
pub mod shared;
pub mod snapshot;
pub mod state;
pub mod terms;
pub mod time;

pub use engine::{Engine, EngineConfig, LogPolicy};
pub use event::{RawBody, RawEvent};
pub use outcome::{Code, Outcome, Record, RecordBody, Refusal};
pub use settings::{Tenant, TenantSpec};
