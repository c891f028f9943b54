//! Redis as the shared, durable backing of the hot state (issue 4, in progress): many
//! daybook replicas, one meter. This module holds what is settled so far, the key
//! design; the claim protocol and the near cache build on it.
//!
//! The design (ARCHITECTURE.md, "Redis"): every state entry is a join-semilattice value
//! (`rating::state`), so Redis holds the join of every replica's contribution. A replica
//! that would change a shared entry joins its contribution into Redis atomically (one Lua
//! script) and rates the event against the value Redis held before it. Entries a replica
//! already holds and an event would not change never touch Redis.

pub mod keys;
pub mod redis;
