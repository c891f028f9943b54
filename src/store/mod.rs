//! Redis as the shared, durable backing of the hot state: many daybook replicas, one
//! meter. `keys` is the key design, `redis` the store (claims, emissions, event-id
//! reservations, tenants, the deadline and the breaker), `rollup` the per-date sums that
//! usage and statements read.
//!
//! The design (ARCHITECTURE.md, "Redis"): every state entry is a join-semilattice value
//! (`rating::state`), so Redis holds the join of every replica's contribution. A replica
//! that would change a shared entry joins its contribution into Redis atomically (one Lua
//! script) and rates the event against the value Redis held before it.

pub mod keys;
pub mod log;
pub mod redis;
pub mod rollup;
pub mod voids;
