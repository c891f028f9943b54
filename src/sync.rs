//! Locks that a panic cannot poison for everyone else.
//!
//! A std lock held by a thread that panics is poisoned, and every later `lock()` fails: one
//! bad request would turn into errors for every caller of its tenant until a restart.
//! daybook's shared state is changed only by complete steps (an entry is replaced whole,
//! a total is added to with checked arithmetic), so the state behind a poisoned lock is
//! still a state some sequence of whole steps reached, and the next caller goes on with it.

use std::sync::{LockResult, PoisonError};

pub trait Unpoisoned<G> {
    /// The guard, whether or not another holder panicked.
    fn unpoisoned(self) -> G;
}

impl<G> Unpoisoned<G> for LockResult<G> {
    fn unpoisoned(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_panic_while_holding_a_lock_leaves_it_usable() {
        let shared = Arc::new(Mutex::new(1));
        let held = shared.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unpoisoned();
            panic!("a request that panics");
        })
        .join();
        assert!(shared.is_poisoned());
        *shared.lock().unpoisoned() += 1;
        assert_eq!(*shared.lock().unpoisoned(), 2);
    }
}
