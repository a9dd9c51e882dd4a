//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas
//! of a controller never both act.
//!
//! Every replica watches and serves health; only the one holding the Lease
//! reconciles ([`Leadership::is_leader`]). The protocol is client-go's:
//!
//! - The holder renews `renewTime` every `renew_interval` with an update
//!   that carries the Lease's `resourceVersion`, so two writers cannot both
//!   win. It stops leading when it has not renewed for `renew_deadline`.
//! - Another replica takes over only after it has seen the same record,
//!   unchanged, for `leaseDurationSeconds` on its *own* clock (so clock skew
//!   between nodes does not matter), and counts a `leaseTransitions`.
//!   Since `renew_deadline < lease_duration`, the old holder has stopped
//!   before the new one starts.
//! - On shutdown the holder releases the Lease (empty holder, 1 s), and a
//!   standby takes over at once instead of waiting for expiry.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::ControllerMetrics;

/// Timings and names of one Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The Lease's name, usually the controller's name.
    pub name: String,
    /// The Lease's namespace, usually the controller's own.
    pub namespace: String,
    /// This replica's identity, usually the pod name.
    pub identity: String,
    /// How long a Lease holds without renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the holder renews.
    pub renew_interval: Duration,
    /// How often a standby looks at the Lease, and a failed renewal is retried.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's timings (15 s lease, 10 s deadline, 2 s retry), renewing
    /// every 5 s to spare a Raspberry Pi's etcd.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_interval: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as it was just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// It is free or expired: take it.
    Acquire,
    /// Someone else holds it; look again after this long at the latest.
    Wait(Duration),
}

/// The decision for a Lease that this replica has seen unchanged for
/// `unchanged_for` (see [`Observer`]).
#[must_use]
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(_) => {
            let duration = lease_duration(spec);
            if unchanged_for >= duration {
                Decision::Acquire
            } else {
                Decision::Wait(duration - unchanged_for)
            }
        }
    }
}

fn lease_duration(spec: &LeaseSpec) -> Duration {
    let secs = spec.lease_duration_seconds.unwrap_or(15).max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(15))
}

/// Remembers when this replica first saw the current Lease record, on its
/// own monotonic clock.
#[derive(Debug, Default)]
pub struct Observer {
    /// The record last seen, and since when.
    last: Option<(LeaseSpec, Instant)>,
}

impl Observer {
    /// Notes the record read at `now` and returns how long it has been
    /// unchanged.
    pub fn observe(&mut self, spec: &LeaseSpec, now: Instant) -> Duration {
        match &self.last {
            Some((seen, since)) if seen == spec => now.saturating_duration_since(*since),
            _ => {
                self.last = Some((spec.clone(), now));
                Duration::ZERO
            }
        }
    }
}

/// The record to write after `decision` (which must not be `Wait`).
#[must_use]
pub fn next_spec(
    decision: &Decision,
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let base = current.cloned().unwrap_or_default();
    let duration_secs = i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(15);
    let transitions = base.lease_transitions.unwrap_or(0);
    match decision {
        Decision::Renew => LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(duration_secs),
            renew_time: Some(MicroTime(now)),
            acquire_time: base.acquire_time.clone().or(Some(MicroTime(now))),
            ..base
        },
        Decision::Create | Decision::Acquire | Decision::Wait(_) => LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(duration_secs),
            renew_time: Some(MicroTime(now)),
            acquire_time: Some(MicroTime(now)),
            lease_transitions: Some(if current.is_some() {
                transitions.saturating_add(1)
            } else {
                0
            }),
            ..base
        },
    }
}

/// The record that gives the Lease up: no holder, expiring in a second.
#[must_use]
pub fn released_spec(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..current.clone()
    }
}

/// Whether this replica leads. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership {
    /// Updated by the [`LeaderElector`].
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Leadership of a replica without leader election: always the leader.
    #[must_use]
    pub fn always() -> Self {
        let (_tx, rx) = watch::channel(true);
        Self { rx }
    }

    /// Whether this replica leads now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Yields each time this replica becomes the leader.
    pub fn acquired(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.rx.clone(), |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                if *rx.borrow_and_update() {
                    return Some(((), rx));
                }
            }
        })
    }
}

/// Runs the election for one replica.
#[derive(Debug)]
pub struct LeaderElector {
    /// The Lease's namespace.
    api: Api<Lease>,
    /// Names and timings.
    settings: LeaseSettings,
    /// Publishes leadership.
    tx: watch::Sender<bool>,
    /// Gets `homelab_leader`, when given.
    metrics: Option<ControllerMetrics>,
}

/// What the election loop remembers between steps.
#[derive(Debug, Default)]
struct Memory {
    observer: Observer,
    /// The Lease as last written or read, with its resourceVersion.
    lease: Option<Lease>,
    /// When we last renewed successfully (locally).
    renewed: Option<Instant>,
}

impl LeaderElector {
    /// An elector and the [`Leadership`] it updates. Starts as a standby.
    #[must_use]
    pub fn new(client: Client, settings: LeaseSettings) -> (Self, Leadership) {
        let (tx, rx) = watch::channel(false);
        let api = Api::namespaced(client, &settings.namespace);
        let elector = Self {
            api,
            settings,
            tx,
            metrics: None,
        };
        (elector, Leadership { rx })
    }

    /// Also reports leadership as the `homelab_leader` gauge.
    #[must_use]
    pub fn with_metrics(mut self, metrics: ControllerMetrics) -> Self {
        metrics.set_leader(false);
        self.metrics = Some(metrics);
        self
    }

    /// Campaigns and renews until `stop` completes, then gives the Lease up
    /// if it holds it. Stop it only after reconciles have finished.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tracing::info!(
            lease = %format!("{}/{}", self.settings.namespace, self.settings.name),
            identity = %self.settings.identity,
            "leader election started"
        );
        let mut memory = Memory::default();
        let mut stop = std::pin::pin!(stop);
        loop {
            let (leader, wait) = self.step(&mut memory).await;
            self.set_leader(leader);
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let was_leader = self.tx.send_replace(false);
        if let Some(m) = &self.metrics {
            m.set_leader(false);
        }
        if was_leader {
            self.release(memory.lease).await;
        }
    }

    /// One round: read (or reuse) the Lease, decide, write. Returns whether
    /// we lead and when to run the next round.
    async fn step(&self, memory: &mut Memory) -> (bool, Duration) {
        let s = &self.settings;
        let now = Instant::now();
        let was_leader = *self.tx.borrow();
        let within_deadline = was_leader
            && memory
                .renewed
                .is_some_and(|t| now.saturating_duration_since(t) < s.renew_deadline);
        let keep = (within_deadline, s.retry_period);

        // The holder renews from what it wrote last; a conflict sends it
        // back to reading.
        let lease = match memory.lease.take().filter(|_| was_leader) {
            Some(lease) => Some(lease),
            None => match self.api.get_opt(&s.name).await {
                Ok(lease) => lease,
                Err(err) => {
                    tracing::warn!(error = %crate::error::report(&err), "could not read the lease");
                    return keep;
                }
            },
        };
        let spec = lease.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let unchanged_for = spec
            .as_ref()
            .map_or(Duration::ZERO, |sp| memory.observer.observe(sp, now));
        let decision = decide(spec.as_ref(), &s.identity, unchanged_for);
        if let Decision::Wait(left) = decision {
            memory.lease = lease;
            return (false, left.min(s.retry_period));
        }

        let new_spec = next_spec(
            &decision,
            spec.as_ref(),
            &s.identity,
            s.lease_duration,
            Timestamp::now(),
        );
        let result = match lease {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(s.name.clone()),
                        namespace: Some(s.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // metadata.resourceVersion comes along: the update fails with
                // a conflict if anyone wrote since we read.
                lease.spec = Some(new_spec);
                self.api
                    .replace(&s.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                if !was_leader {
                    tracing::info!(identity = %s.identity, "became the leader");
                }
                if let Some(sp) = &written.spec {
                    memory.observer.observe(sp, now);
                }
                memory.lease = Some(written);
                memory.renewed = Some(now);
                (true, s.renew_interval)
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                tracing::debug!("lease changed under us; reading it again");
                keep
            }
            Err(err) => {
                tracing::warn!(error = %crate::error::report(&err), ?decision, "could not write the lease");
                keep
            }
        }
    }

    fn set_leader(&self, leader: bool) {
        // Notify only on a change: a renewal must not look like a new term.
        let lost = self.tx.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        }) && !leader;
        if lost {
            tracing::warn!(identity = %self.settings.identity, "no longer the leader");
        }
        if let Some(m) = &self.metrics {
            m.set_leader(leader);
        }
    }

    /// Gives the Lease up if we still hold it.
    async fn release(&self, last: Option<Lease>) {
        let s = &self.settings;
        let lease = match last {
            Some(lease) => Some(lease),
            None => self.api.get_opt(&s.name).await.ok().flatten(),
        };
        let Some(mut lease) = lease else { return };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return;
        }
        lease.spec = Some(released_spec(&spec, Timestamp::now()));
        match self
            .api
            .replace(&s.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = %s.identity, "released the lease"),
            Err(err) => {
                tracing::warn!(error = %crate::error::report(&err), "could not release the lease; it expires by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn held_by(holder: &str, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(Timestamp::from_second(1_700_000_000).unwrap())),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "me", Duration::ZERO), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("me", 15)), "me", secs(100)),
            Decision::Renew
        );
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let released = released_spec(&held_by("other", 15), Timestamp::now());
        assert_eq!(
            decide(Some(&released), "me", Duration::ZERO),
            Decision::Acquire
        );
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held_by("x", 15)
        };
        assert_eq!(
            decide(Some(&empty), "me", Duration::ZERO),
            Decision::Acquire
        );
    }

    #[test]
    fn live_lease_of_another_is_waited_on() {
        assert_eq!(
            decide(Some(&held_by("other", 15)), "me", secs(10)),
            Decision::Wait(secs(5))
        );
    }

    #[test]
    fn expired_lease_of_another_is_taken() {
        assert_eq!(
            decide(Some(&held_by("other", 15)), "me", secs(15)),
            Decision::Acquire
        );
        // A missing duration counts as 15 s.
        let no_duration = LeaseSpec {
            lease_duration_seconds: None,
            ..held_by("other", 0)
        };
        assert_eq!(
            decide(Some(&no_duration), "me", secs(14)),
            Decision::Wait(secs(1))
        );
    }

    #[test]
    fn observer_measures_unchanged_time_on_the_local_clock() {
        let mut obs = Observer::default();
        let t0 = Instant::now();
        let a = held_by("other", 15);
        assert_eq!(obs.observe(&a, t0), Duration::ZERO);
        assert_eq!(obs.observe(&a, t0 + secs(9)), secs(9));
        // The holder renewed: start over.
        let renewed = LeaseSpec {
            renew_time: Some(MicroTime(Timestamp::from_second(1_700_000_010).unwrap())),
            ..a.clone()
        };
        assert_eq!(obs.observe(&renewed, t0 + secs(10)), Duration::ZERO);
        assert_eq!(obs.observe(&renewed, t0 + secs(26)), secs(16));
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_does_not() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let old = held_by("other", 15);
        let taken = next_spec(&Decision::Acquire, Some(&old), "me", secs(15), now);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let later = Timestamp::from_second(1_700_000_105).unwrap();
        let renewed = next_spec(&Decision::Renew, Some(&taken), "me", secs(15), later);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(now)));
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));

        let created = next_spec(&Decision::Create, None, "me", secs(15), now);
        assert_eq!(created.lease_transitions, Some(0));
    }

    #[test]
    fn release_keeps_history_and_frees_the_lease() {
        let now = Timestamp::from_second(1_700_000_200).unwrap();
        let released = released_spec(&held_by("me", 15), now);
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(3));
    }

    #[test]
    fn deadline_is_shorter_than_the_lease() {
        let s = LeaseSettings::new("c", "ns", "me");
        assert!(s.renew_deadline < s.lease_duration);
        assert!(s.renew_interval < s.renew_deadline);
    }

    #[tokio::test]
    async fn acquired_yields_on_each_gain() {
        let (tx, rx) = watch::channel(false);
        let leadership = Leadership { rx };
        let mut gains = Box::pin(leadership.acquired());
        tx.send_replace(true);
        assert_eq!(gains.next().await, Some(()));
        tx.send_replace(false);
        tx.send_replace(true);
        assert_eq!(gains.next().await, Some(()));
        assert!(leadership.is_leader());
        drop(tx);
        assert_eq!(gains.next().await, None);
        assert!(Leadership::always().is_leader());
    }
}
