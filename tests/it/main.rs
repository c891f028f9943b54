//! The integration tests: one binary (it links once, which matters on a 2-core machine).

mod rules;
mod scenarios;
