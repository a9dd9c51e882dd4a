//! What tests that run side by side must not use at once (one node's only GPU,
//! the whole cluster for a disruptive test): a lock each of them takes, with a
//! deadline, instead of waiting for other tests' pods.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

/// One thing only one test at a time may use.
pub struct Exclusive {
    what: &'static str,
    longest: Duration,
    lock: Mutex<()>,
}

impl Exclusive {
    /// `what` is named when a test waits longer than `longest` for it.
    pub const fn new(what: &'static str, longest: Duration) -> Self {
        Exclusive {
            what,
            longest,
            lock: Mutex::const_new(()),
        }
    }

    /// Waits until no other test holds it; it is held until the guard drops.
    ///
    /// # Panics
    /// When another test held it for longer than the deadline given to `new`.
    pub async fn take(&'static self) -> MutexGuard<'static, ()> {
        match tokio::time::timeout(self.longest, self.lock.lock()).await {
            Ok(guard) => guard,
            Err(_) => panic!(
                "another test held {} for over {:?}",
                self.what, self.longest
            ),
        }
    }
}

/// The kwok cluster's one iGPU (`gpu.intel.com/i915: 1` on n100-1): a test that
/// asks for it holds this until its GPU pods are gone.
pub static IGPU: Exclusive = Exclusive::new(
    "the iGPU of n100-1 (gpu.intel.com/i915)",
    Duration::from_secs(600),
);
