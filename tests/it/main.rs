//! The integration tests: one binary (it links once, which matters on a 2-core machine).

mod claims_voids;
mod crash;
mod detail;
mod hostile;
mod limits;
mod memory;
mod one_pass;
mod operator;
mod polyglot;
mod properties;
mod properties_part_two;
mod receiver;
mod redis_store;
mod reflection;
mod replay;
mod replicas;
mod retention;
mod rules;
mod rules_part_two;
mod scenarios;
mod security;
mod server;
mod sinks;
mod telemetry;
mod tenant_log;
