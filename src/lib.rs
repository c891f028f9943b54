//! daybook: a gRPC metering sidecar for contact-center and conversational-messaging
//! platforms. See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
/// Dialling a daybook and the generated clients: the `daybook-client` crate.
pub use daybook_client as client;
pub mod detail;
pub mod fuzz_targets;
pub mod loadgen;
pub mod logging;
pub mod measure;
pub mod rating;
pub mod replay;
pub mod scenario;
pub mod server;
pub mod store;
pub mod sync;
pub mod tenants;
