//! What a replica keeps of the shared store: the connection, the events whose effects
//! have not reached it, whether it answers (degraded mode), the claim lanes, and the
//! tenant definitions it last held. The state owner holds it; the protocol that uses it
//! is the parent module.

use crate::sync::Unpoisoned;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::pb;
use crate::rating::time::Instant;
use crate::store::redis::{RedisStore, StoreError};

/// An accepted event whose shared effects may not be in the store yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub event: pb::Event,
    pub now: Option<Instant>,
}

/// The shared store and what has not reached it yet.
pub struct SharedState {
    pub store: Arc<RedisStore>,
    /// By journal position: decided in degraded mode, or records not yet emitted.
    pub(super) pending: Mutex<BTreeMap<u64, Pending>>,
    /// The last `Shipped` position journaled.
    pub(super) shipped: AtomicU64,
    /// Whether the last call to the store failed: degraded mode.
    pub(super) degraded: AtomicBool,
    /// One claim at a time per ordering stripe on this replica: claims of one key queue
    /// here instead of racing each other to Redis (each would find the other's value
    /// stale), and each sees the value the previous one left in the near cache.
    pub(super) lanes: Vec<tokio::sync::Mutex<()>>,
    /// Tenant definitions as the store last held them, by id: what a change expects.
    pub(super) tenants: Mutex<HashMap<String, Vec<u8>>>,
    /// How far this replica has rated each tenant log (`super::logged`).
    pub(super) followers: Followers,
}

impl SharedState {
    /// `stripes`: the number of ordering stripes, one claim lane each.
    pub fn new(store: Arc<RedisStore>, stripes: usize, shipped: u64, pending: BTreeMap<u64, Pending>) -> Self {
        SharedState {
            store,
            pending: Mutex::new(pending),
            shipped: AtomicU64::new(shipped),
            degraded: AtomicBool::new(false),
            lanes: (0..stripes).map(|_| tokio::sync::Mutex::new(())).collect(),
            tenants: Mutex::new(HashMap::new()),
            followers: Default::default(),
        }
    }

    /// Events whose shared effects are not yet known to be in the store.
    pub fn pending(&self) -> usize {
        self.pending.lock().unpoisoned().len()
    }

    /// Whether decisions are currently made without the store.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire) || self.store.is_open()
    }

    pub(super) fn note(&self, result: &Result<impl Sized, StoreError>) {
        self.degraded.store(result.is_err(), Ordering::Release);
    }
}

/// How far this replica has rated each tenant log (`super::logged`): the last stream id rated, behind a
/// lock held while rating, so that one task at a time follows a tenant's log.
pub struct Followers {
    by_tenant: Mutex<HashMap<String, Arc<tokio::sync::Mutex<String>>>>,
    /// Records of rated entries the store did not take yet, sent again by the reconciler.
    pub(super) unemitted: Mutex<Vec<Unemitted>>,
    /// This process, as its log entries name it: random, so that a restarted process
    /// does not take entries of its previous life for its callers'.
    pub(super) replica: u64,
    /// Answers of this process's entries, by tenant and stream id (ids are per stream:
    /// two tenants' logs have entries of the same id), until their callers take them.
    answers: Mutex<HashMap<(String, String), (Answer, std::time::Instant)>>,
}

impl Default for Followers {
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new();
        let replica = std::hash::BuildHasher::hash_one(&seed, std::process::id()) | 1;
        Followers { by_tenant: Mutex::default(), unemitted: Mutex::default(), replica, answers: Mutex::default() }
    }
}

/// An event's answer and the journal position it waits for (`super::Decided`).
type Answer = (Result<crate::rating::Outcome, crate::rating::Refusal>, u64);

/// How long an answer waits for its caller (one that gave up never takes it).
const ANSWER_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// Records of one log entry, not yet in the shared record streams.
pub struct Unemitted {
    pub tenant: String,
    pub entry: crate::rating::ids::Fp,
    pub at: Instant,
    pub records: Vec<crate::rating::outcome::Record>,
}

impl Followers {
    /// Keeps the answer of this process's entry `id` of a tenant's log for its caller.
    pub(super) fn keep_answer(&self, tenant: &str, id: &str, decided: Answer) {
        let mut answers = self.answers.lock().unpoisoned();
        if answers.len() >= 4096 {
            answers.retain(|_, (_, at)| at.elapsed() < ANSWER_KEPT);
        }
        answers.insert((tenant.to_string(), id.to_string()), (decided, std::time::Instant::now()));
    }

    /// The answer of this process's entry `id` of a tenant's log, once rated.
    pub(super) fn take_answer(&self, tenant: &str, id: &str) -> Option<Answer> {
        let key = (tenant.to_string(), id.to_string());
        self.answers.lock().unpoisoned().remove(&key).map(|(decided, _)| decided)
    }

    pub(super) fn of(&self, tenant: &str) -> Arc<tokio::sync::Mutex<String>> {
        self.by_tenant
            .lock()
            .unpoisoned()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new("0-0".to_string())))
            .clone()
    }
}
