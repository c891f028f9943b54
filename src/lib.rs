//! daybook: a gRPC metering sidecar for contact-center and conversational-messaging
//! platforms. See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod rating;
pub mod scenario;
pub mod tenants;
