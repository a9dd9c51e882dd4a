//! The runner: one kube-runtime [`Controller`] per binary, wired with what
//! every homelab controller needs.
//!
//! - watches of the kind and of what it owns, reporting into [`Health`];
//! - one `reconcile` span per call with the object's kind, namespace, name
//!   (`object`) and generation;
//! - reconcile metrics, with errors counted under their fixed label;
//! - per-object exponential backoff on errors, plus a Warning Event;
//! - an object whose child the API server refused as invalid is `Stalled`
//!   with the API server's words and a `ChildRefused` Warning Event, and is
//!   not reconciled again until its spec changes (or a slow retry);
//! - leader election: every replica watches and serves health, only the
//!   leader reconciles, and a new leader reconciles everything at once;
//! - `/metrics`, `/healthz`, `/readyz` on one port;
//! - graceful shutdown on SIGTERM/SIGINT: no new reconciles, running ones
//!   finish, the Lease is released; a second signal forces the exit.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::Error;
use crate::apply::{FieldManager, StatusWrite};
use crate::backoff::ErrorBackoff;
use crate::cache::CachesReady;
use crate::error::{Refusal, report};
use crate::events::{EventPublisher, RECONCILE_FAILED};
use crate::failover::FailoverMetrics;
use crate::failover::workload::Actor;
use crate::health::Health;
use crate::kinds::{Namespaced, Reconciled, Watched};
use crate::leader::{LeaderElector, Leadership, LeaseSettings};
use crate::metrics::{ControllerMetrics, Metrics};
use crate::objects::{ObjectGauges, ReadState};
use crate::server::Server;
use crate::settings::Settings;
use homelab_api::conditions::Outcome;
use homelab_api::conditions::reasons::CHILD_REFUSED;

/// The error type of a controller's reconcile.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// A fixed label for `homelab_reconcile_errors_total{error="…"}`: one
    /// per variant, never built from an object name or an error message.
    fn metric_label(&self) -> &'static str;

    /// The reason of the Warning Event published when a reconcile fails
    /// with this error (CamelCase).
    fn event_reason(&self) -> &'static str {
        RECONCILE_FAILED
    }
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        Error::metric_label(self)
    }
}

/// What a reconcile gets besides the object.
pub struct Context<S> {
    /// Kubernetes client, shared by all of this controller's requests.
    pub client: Client,
    /// Server-side apply as this controller's field manager.
    pub manager: FieldManager,
    /// Publishes Kubernetes Events as this controller.
    pub events: EventPublisher,
    /// This controller's reconcile metrics.
    pub metrics: ControllerMetrics,
    /// Whether this replica holds the Lease (always, without election).
    pub leadership: Leadership,
    /// The controller's own state: its settings, metrics, extra clients.
    pub state: S,
    /// The administrator lets failover fence nodes ([`Settings::fencing_allowed`]).
    pub fencing_allowed: bool,
    /// Per-object error backoff, keyed by (namespace, name).
    backoff: ErrorBackoff<(Option<String>, String)>,
    /// Objects whose current generation had a child refused.
    refusals: RefusalGate,
    /// Resolves once the runner's caches have listed.
    caches: CachesReady,
}

impl<S> Context<S> {
    /// A context for calling a reconcile directly (in tests); the runner
    /// builds its own.
    pub fn new(client: Client, settings: &Settings, metrics: ControllerMetrics, state: S) -> Self {
        Self {
            manager: FieldManager::new(&settings.name),
            events: EventPublisher::new(
                client.clone(),
                &settings.name,
                Some(settings.identity.clone()),
            ),
            client,
            metrics,
            leadership: Leadership::always(),
            state,
            fencing_allowed: settings.fencing_allowed,
            backoff: ErrorBackoff::new(settings.error_backoff_base, settings.error_backoff_cap),
            refusals: RefusalGate::new(settings.error_backoff_cap),
            caches: CachesReady::default(),
        }
    }

    /// Failover acting as this controller (its client, Events, field manager
    /// and whether it may fence), under the name `controller` (which the taints
    /// it adds carry), counting into `metrics` and judging nodes by the
    /// heartbeat `leases`.
    #[must_use]
    pub fn failover_actor<'a>(
        &'a self,
        controller: &'a str,
        metrics: &'a FailoverMetrics,
        leases: &'a Store<Lease>,
    ) -> Actor<'a> {
        Actor {
            client: &self.client,
            events: &self.events,
            metrics,
            controller,
            manager: &self.manager,
            fencing_allowed: self.fencing_allowed,
            leases,
        }
    }
}

impl<S> Debug for Context<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("manager", &self.manager)
            .field("leader", &self.leadership.is_leader())
            .finish_non_exhaustive()
    }
}

/// Adds one watch to the controller when it is built.
type AddWatch<K> = Box<dyn FnOnce(Controller<K>, &Health) -> Controller<K> + Send>;

/// Builds and runs the controller of kind `K`.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use k8s_openapi::api::{apps::v1::Deployment, core::v1::{ConfigMap, Service}};
/// # use homelab_kit::{Context, Runner, Settings, Action};
/// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<Context<()>>) -> Result<Action, homelab_kit::Error> { Ok(Action::await_change()) }
/// # async fn main_() -> Result<(), homelab_kit::Error> {
/// homelab_kit::telemetry::init()?;
/// let client = kube::Client::try_default().await.map_err(|e| homelab_kit::Error::kube("connect", e))?;
/// Runner::<ConfigMap>::new(client, Settings::from_env("example-controller")?)
///     .owns::<Deployment>()
///     .owns::<Service>()
///     .run((), reconcile)
///     .await
/// # }
/// ```
pub struct Runner<K>
where
    K: Watched,
{
    /// Client for the watches and the controller's requests.
    client: Client,
    /// Names, port, timings.
    settings: Settings,
    /// The binary's metrics registry.
    metrics: Metrics,
    /// This controller's reconcile metrics.
    controller_metrics: ControllerMetrics,
    /// Cache of `K`, filled by the main watch.
    reader: Store<K>,
    /// Fills `reader`.
    writer: Writer<K>,
    /// Watches of owned and related kinds.
    watches: Vec<AddWatch<K>>,
    /// Watches that fill caches and wake reconciles after the settle window.
    settled: Vec<Trigger<K>>,
    /// Resolves once every cache has listed.
    caches: CachesReady,
    /// The controller's field manager, which knows its own writes.
    manager: FieldManager,
    /// Whether a change to `K`'s status alone wakes its reconcile.
    status_changes_wake: bool,
    /// Told when the main watch has listed.
    listed_tx: futures::channel::oneshot::Sender<()>,
    /// Resolves once the main watch has listed (`false`: it never will).
    listed: Shared<BoxFuture<'static, bool>>,
}

/// A watch that fills a cache and names the objects its changes concern.
type Trigger<K> = Box<dyn FnOnce(&Health) -> BoxStream<'static, ObjectRef<K>> + Send>;

impl<K> Runner<K>
where
    K: Reconciled,
{
    /// A runner for kind `K` with the given settings.
    #[must_use]
    pub fn new(client: Client, settings: Settings) -> Self {
        let mut metrics = Metrics::new();
        let controller_metrics = metrics.controller(&settings.name);
        let (reader, writer) = reflector::store();
        let manager = FieldManager::new(&settings.name);
        let (listed_tx, listed_rx) = futures::channel::oneshot::channel();
        Self {
            client,
            settings,
            metrics,
            controller_metrics,
            reader,
            writer,
            watches: Vec::new(),
            settled: Vec::new(),
            caches: CachesReady::default(),
            manager,
            status_changes_wake: true,
            listed_tx,
            listed: listed_rx.map(|told| told.is_ok()).boxed().shared(),
        }
    }

    /// Resolves once the cache of `K` ([`Runner::store`]) has listed, with
    /// `false` when it never will (the controller stopped first). For a task
    /// beside the reconciles; not `Store::wait_until_ready`, which the
    /// controller itself waits on: of two tasks waiting there at once only one
    /// is woken.
    pub fn listed(&self) -> impl Future<Output = bool> + Send + 'static {
        self.listed.clone()
    }

    /// Keeps every object of kind `O` that `api` and `config` select in a
    /// cache (each trimmed by `trim`) for the reconcile to read instead of
    /// asking the API server. Reconciles wait until it has listed.
    pub fn cache<O>(&mut self, api: Api<O>, config: watcher::Config, trim: fn(&mut O)) -> Store<O>
    where
        O: Watched,
    {
        self.cached_trigger(api, config, trim, |_: &O| None, false, |_: &O| Vec::new())
    }

    /// [`Runner::cache`] of every object of kind `O` in the cluster, trimmed by
    /// [`crate::cache::trim`].
    pub fn cache_all<O>(&mut self) -> Store<O>
    where
        O: Watched,
    {
        let api = Api::all(self.client.clone());
        self.cache(api, watcher::Config::default(), crate::cache::trim::<O>)
    }

    /// Reconciles wait until `store` (filled elsewhere, such as the kubelets'
    /// Leases of [`crate::failover::heartbeats::watch`]) has listed.
    pub fn waits_for<O>(&mut self, store: &Store<O>)
    where
        O: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        self.caches.add(store);
    }

    /// As [`Runner::owns`], and keeps the owned objects whole in a cache
    /// (trimmed by `trim`). A change wakes the owner only when `relevant`
    /// hashes differently from the object's last version (`None`: nothing of
    /// it matters yet), or it is deleted, and only when the controller's own
    /// apply did not make it: the reconcile that applied it used the result
    /// already. For the same reason an owned object's first appearance wakes
    /// nobody. Wakes come after the settle window ([`Settings::settle`]).
    pub fn owns_cached<C>(&mut self, trim: fn(&mut C), relevant: fn(&C) -> Option<u64>) -> Store<C>
    where
        C: Namespaced,
    {
        let api: Api<C> = scoped_api(&self.client, self.settings.namespace.as_deref());
        let own = self.manager.own_writes();
        self.cached_trigger(
            api,
            watcher::Config::default(),
            trim,
            relevant,
            false,
            move |child: &C| {
                if own.is_echo(child.meta()) {
                    return Vec::new();
                }
                owners::<K>(child.meta()).collect()
            },
        )
    }

    /// As [`Runner::watches`], and keeps the watched objects in a cache
    /// (trimmed by `trim`). A change wakes the objects `mapper` names only
    /// when `relevant` hashes differently from the object's last version
    /// (`None`: nothing of it matters yet), or it is deleted, after the settle
    /// window ([`Settings::settle`]).
    pub fn watches_cached<O, I>(
        &mut self,
        api: Api<O>,
        config: watcher::Config,
        trim: fn(&mut O),
        relevant: fn(&O) -> Option<u64>,
        mapper: impl Fn(&O) -> I + Send + Sync + 'static,
    ) -> Store<O>
    where
        O: Watched,
        I: IntoIterator<Item = ObjectRef<K>> + 'static,
    {
        self.cached_trigger(api, config, trim, relevant, true, move |o: &O| {
            mapper(o).into_iter().collect()
        })
    }

    /// As [`Runner::watches_cached`] over the watched namespaces, waking the
    /// objects of `K` in the changed object's namespace that `refers` says name
    /// it (a server mounting a claim, a gateway on a pin); see
    /// [`crate::cached::referring`].
    pub fn watches_referenced<O>(
        &mut self,
        trim: fn(&mut O),
        relevant: fn(&O) -> Option<u64>,
        refers: impl Fn(&K, &str) -> bool + Send + Sync + 'static,
    ) -> Store<O>
    where
        O: Namespaced,
    {
        let referrers = self.store();
        self.watches_cached(
            self.scoped_api(),
            watcher::Config::default(),
            trim,
            relevant,
            move |o: &O| crate::cached::referring(&referrers, o, &refers),
        )
    }

    /// Keeps every node in a cache ([`crate::cache::trim_node`]); a change that
    /// placement or failover reads ([`crate::cache::node_relevance`]) wakes the
    /// objects `concerned` names among this controller's, given the node's name.
    pub fn watches_nodes(
        &mut self,
        concerned: fn(&Store<K>, &str) -> Vec<ObjectRef<K>>,
    ) -> Store<Node> {
        let objects = self.store();
        self.watches_cached(
            Api::all(self.client.clone()),
            watcher::Config::default(),
            crate::cache::trim_node,
            crate::cache::node_relevance,
            move |node: &Node| concerned(&objects, &node.name_any()),
        )
    }

    fn cached_trigger<O>(
        &mut self,
        api: Api<O>,
        config: watcher::Config,
        trim: fn(&mut O),
        relevant: impl Fn(&O) -> Option<u64> + Send + 'static,
        births_wake: bool,
        concerned: impl Fn(&O) -> Vec<ObjectRef<K>> + Send + 'static,
    ) -> Store<O>
    where
        O: Watched,
    {
        let (reader, writer) = reflector::store();
        self.caches.add(&reader);
        self.settled.push(Box::new(move |health: &Health| {
            let probe = health.watch(format!("cached {}", O::kind(&())));
            let mut changes = Changes::new(births_wake);
            probe
                .observe(watcher(api, config).default_backoff())
                .modify(trim)
                .reflect(writer)
                .filter_map(move |event| {
                    let woken = match event {
                        Ok(event) => changes.woken(event, &relevant, &concerned),
                        Err(_) => Vec::new(),
                    };
                    futures::future::ready(
                        (!woken.is_empty()).then(|| futures::stream::iter(woken)),
                    )
                })
                .flatten()
                .boxed()
        }));
        reader
    }

    /// A change to an object's status alone no longer wakes its reconcile (its
    /// spec, labels, annotations, finalizers or deletion still do). For a kind
    /// whose status only its own controller writes: every status write would
    /// otherwise wake one more reconcile that finds nothing to do. Such a
    /// controller must look again soon itself when its status write is refused as
    /// stale, since the newer version's arrival wakes nothing.
    #[must_use]
    pub fn ignore_status_changes(mut self) -> Self {
        self.status_changes_wake = false;
        self
    }

    /// Reconciles the owner when an object of kind `C` it controls changes
    /// (through the controller owner reference). Only metadata is watched.
    #[must_use]
    pub fn owns<C>(self) -> Self
    where
        C: Namespaced,
    {
        self.owns_with::<C>(watcher::Config::default())
    }

    /// As [`Runner::owns`], with a watcher configuration (e.g. a label
    /// selector).
    #[must_use]
    pub fn owns_with<C>(mut self, config: watcher::Config) -> Self
    where
        C: Namespaced,
    {
        // An Api of PartialObjectMeta makes metadata-only requests.
        let api: Api<PartialObjectMeta<C>> =
            scoped_api(&self.client, self.settings.namespace.as_deref());
        self.watches.push(Box::new(move |controller, health| {
            let probe = health.watch(format!("owned {}", C::kind(&())));
            let stream = probe
                .observe(watcher(api, config).default_backoff())
                .touched_objects();
            controller.owns_stream(stream)
        }));
        self
    }

    /// Reconciles the objects `mapper` names when an object of another kind
    /// changes (a UsbDevicePin moving, a Node going away). `api` sets the
    /// scope; use [`Runner::store`] in the mapper to find referrers.
    #[must_use]
    pub fn watches<O, I>(
        mut self,
        api: Api<O>,
        config: watcher::Config,
        mapper: impl Fn(O) -> I + Send + Sync + 'static,
    ) -> Self
    where
        O: Watched,
        I: IntoIterator<Item = ObjectRef<K>> + 'static,
        I::IntoIter: Send,
    {
        self.watches.push(Box::new(move |controller, health| {
            let probe = health.watch(format!("related {}", O::kind(&())));
            let stream = probe
                .observe(watcher(api, config).default_backoff())
                .touched_objects();
            controller.watches_stream(stream, mapper)
        }));
        self
    }

    /// Reconciles the objects `trigger` names, whenever it names them: for what no
    /// watch event announces (a node whose heartbeat stopped).
    #[must_use]
    pub fn reconcile_on(
        mut self,
        trigger: impl futures::Stream<Item = ObjectRef<K>> + Send + 'static,
    ) -> Self {
        self.watches.push(Box::new(move |controller, _health| {
            controller.reconcile_on(trigger)
        }));
        self
    }

    /// The cache of `K` the controller keeps (readable once synced).
    #[must_use]
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// An `Api` of a namespaced kind over what this controller watches: its
    /// namespace (`HOMELAB_WATCH_NAMESPACE`), or every namespace.
    #[must_use]
    pub fn scoped_api<C>(&self) -> Api<C>
    where
        C: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        scoped_api(&self.client, self.settings.namespace.as_deref())
    }

    /// The client the runner uses.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Exports `homelab_objects`, `homelab_object_ready` and
    /// `homelab_object_node_info` from the controller's cache, reading each
    /// object's state with `read` (see [`crate::objects`]).
    #[must_use]
    pub fn export_objects(mut self, read: ReadState<K>) -> Self
    where
        K: Send + Sync,
    {
        let gauges = ObjectGauges::new(self.reader.clone(), read);
        self.metrics
            .sub_registry(&self.settings.name)
            .register_collector(Box::new(gauges));
        self
    }

    /// Where to register the controller's own metrics; they are exported
    /// with the `homelab_` prefix and the `controller` label.
    pub fn registry(&mut self) -> &mut Registry {
        self.metrics.sub_registry(&self.settings.name)
    }

    /// Runs until SIGTERM or SIGINT, then finishes running reconciles,
    /// releases the Lease and returns. A second signal returns at once with
    /// [`Error::ForcedShutdown`].
    ///
    /// # Errors
    /// [`Error::Bind`] if the port is taken, [`Error::Signal`],
    /// [`Error::ControllerStopped`], [`Error::ForcedShutdown`].
    pub async fn run<S, E, F, Fut>(self, state: S, reconcile: F) -> Result<(), Error>
    where
        S: Send + Sync + 'static,
        E: ReconcileError,
        F: Fn(Arc<K>, Arc<Context<S>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let (first, second) = termination_signals()?;
        self.drive(state, reconcile, first, second).await
    }

    /// Runs until `shutdown` completes, then as [`Runner::run`] (for
    /// running a controller inside a test).
    ///
    /// # Errors
    /// As [`Runner::run`], without the signal errors.
    pub async fn run_until<S, E, F, Fut>(
        self,
        state: S,
        reconcile: F,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error>
    where
        S: Send + Sync + 'static,
        E: ReconcileError,
        F: Fn(Arc<K>, Arc<Context<S>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        self.drive(state, reconcile, shutdown, futures::future::pending())
            .await
    }

    async fn drive<S, E, F, Fut>(
        self,
        state: S,
        reconcile: F,
        shutdown: impl Future<Output = ()> + Send + 'static,
        forced: impl Future<Output = ()> + Send,
    ) -> Result<(), Error>
    where
        S: Send + Sync + 'static,
        E: ReconcileError,
        F: Fn(Arc<K>, Arc<Context<S>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let Self {
            client,
            settings,
            metrics,
            controller_metrics,
            reader,
            writer,
            watches,
            settled,
            caches,
            manager,
            status_changes_wake,
            listed_tx,
            listed: _,
        } = self;
        let server = Server::bind(settings.http_addr).await?;
        let health =
            Health::new(settings.watch_failure_window).with_metrics(controller_metrics.watches());

        // Leader election.
        let (elector, leadership) = if settings.leader_election {
            let namespace = settings
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let lease = LeaseSettings::new(&settings.name, namespace, &settings.identity);
            let (elector, leadership) = LeaderElector::new(client.clone(), lease);
            (
                Some(elector.with_metrics(controller_metrics.clone())),
                leadership,
            )
        } else {
            controller_metrics.set_leader(true);
            (None, Leadership::always())
        };

        // The controller and its watches.
        let api: Api<K> = scoped_api(&client, settings.namespace.as_deref());
        let main = health
            .watch(K::kind(&()).into_owned())
            .observe(watcher(api, watcher::Config::default()).default_backoff())
            .modify(crate::cache::trim::<K>)
            .reflect(writer)
            .inspect({
                let mut listed = Some(listed_tx);
                move |event| {
                    if matches!(event, Ok(watcher::Event::InitDone))
                        && let Some(tx) = listed.take()
                    {
                        let _ = tx.send(());
                    }
                }
            })
            .applied_objects()
            // The echo of the controller's own status write: the reconcile that
            // wrote it has used it, and waking another would find nothing to do.
            .try_filter({
                let own = manager.own_writes();
                move |obj| futures::future::ready(!own.is_echo(obj.meta()))
            });
        let main = if status_changes_wake {
            main.boxed()
        } else {
            main.predicate_filter(all_but_status::<K>, PredicateConfig::default())
                .boxed()
        };
        let mut controller = Controller::for_stream(main, reader)
            .with_config(controller::Config::default().concurrency(settings.concurrency));
        for add in watches {
            controller = add(controller, &health);
        }
        if !settled.is_empty() {
            let triggers: Vec<_> = settled.into_iter().map(|t| t(&health)).collect();
            controller = controller.reconcile_on(settle(
                futures::stream::select_all(triggers),
                settings.settle,
            ));
        }
        if elector.is_some() {
            controller = controller.reconcile_all_on(leadership.acquired());
        }

        // Shutdown: kube wants a Send + Sync trigger.
        let requested = Arc::new(AtomicBool::new(false));
        let (graceful_tx, graceful_rx) = futures::channel::oneshot::channel::<()>();
        let shutdown_task = tokio::spawn({
            let requested = requested.clone();
            async move {
                shutdown.await;
                requested.store(true, Ordering::SeqCst);
                tracing::info!("shutting down: no new reconciles, waiting for running ones");
                let _ = graceful_tx.send(());
            }
        });
        controller = controller.graceful_shutdown_on(graceful_rx.map(|_| ()));

        // Health and metrics port, and the election, beside the controller.
        let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server_task = tokio::spawn(server.run(Arc::new(metrics), health.clone(), async move {
            let _ = server_stopped.await;
        }));
        let (elector_stop, elector_stopped) = tokio::sync::oneshot::channel::<()>();
        let elector_task = elector.map(|e| {
            tokio::spawn(e.run(async move {
                let _ = elector_stopped.await;
            }))
        });

        let ctx = Arc::new(Context {
            leadership,
            manager,
            caches,
            ..Context::new(client, &settings, controller_metrics, state)
        });
        tracing::info!(controller = %settings.name, kind = %K::kind(&()), addr = %settings.http_addr, "controller started");
        let results = controller
            .run(wrap_reconcile(reconcile), error_policy::<K, S, E>, ctx)
            .for_each(|result| async move { log_result(result) });
        let outcome = tokio::select! {
            () = results => {
                if requested.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    health.stopped("the controller's streams ended");
                    Err(Error::ControllerStopped)
                }
            }
            () = forced => Err(Error::ForcedShutdown),
        };
        shutdown_task.abort();

        // Give up the Lease only now that no reconcile runs.
        let _ = elector_stop.send(());
        if let Some(task) = elector_task
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("releasing the lease timed out; it expires by itself");
        }
        let _ = server_stop.send(());
        match server_task.await {
            Ok(Err(err)) => tracing::warn!(error = %report(&err), "health server failed"),
            Err(err) => tracing::warn!(error = %err, "health server task failed"),
            Ok(Ok(())) => {}
        }
        tracing::info!("controller stopped");
        outcome
    }
}

/// An `Api` over all namespaces, or one.
fn scoped_api<C>(client: &Client, namespace: Option<&str>) -> Api<C>
where
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The future of one wrapped reconcile.
type ReconcileFuture<E> = tracing::instrument::Instrumented<BoxFuture<'static, Result<Action, E>>>;

/// The controller's reconcile with leadership, a span, metrics, backoff
/// reset and the handling of refused children around it.
fn wrap_reconcile<K, S, E, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context<S>>) -> ReconcileFuture<E>
where
    K: Reconciled,
    S: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(Arc<K>, Arc<Context<S>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    move |obj: Arc<K>, ctx: Arc<Context<S>>| {
        let span = tracing::info_span!(
            "reconcile",
            controller = %ctx.manager.name(),
            kind = %K::kind(&()),
            namespace = obj.namespace().unwrap_or_default(),
            // Not `name`: JSON logs put the span's own name ("reconcile") under
            // that key, and the object's name would be lost beside it.
            object = %obj.name_any(),
            generation = obj.meta().generation.unwrap_or_default(),
        );
        let reconcile = reconcile.clone();
        async move {
            if !ctx.leadership.is_leader() {
                tracing::debug!("standby replica: not reconciling");
                return Ok(Action::await_change());
            }
            let key = (obj.namespace(), obj.name_any());
            let generation = obj.meta().generation;
            if let Some(wait) = ctx.refusals.holds(&key, obj.uid(), generation, Instant::now()) {
                tracing::debug!(
                    retry_in_secs = wait.as_secs(),
                    "not reconciling: the API server refused what this generation of the spec builds"
                );
                return Ok(Action::requeue(wait));
            }
            ctx.caches.wait().await;
            tracing::trace!("reconcile starts");
            let _timer = ctx.metrics.reconcile_started();
            let result = reconcile(obj.clone(), ctx.clone()).await;
            match result {
                Ok(action) => {
                    ctx.backoff.succeeded(&key);
                    ctx.refusals.clear(&key);
                    Ok(action)
                }
                Err(err) => {
                    ctx.metrics.reconcile_failed(err.metric_label());
                    let stalled = match Refusal::find(&err) {
                        Some(refusal) => stall(obj.as_ref(), &ctx, &refusal).await,
                        None => None,
                    };
                    // Without a status saying so, a refusal is an ordinary
                    // failure: the error policy logs it and backs off.
                    stalled.ok_or(err)
                }
            }
        }
        .boxed()
        .instrument(span)
    }
}

/// After the API server refused a child of `obj` as invalid: `Ready=False`
/// and `Stalled=True` with its words, a Warning Event when that is news, and
/// no reconcile of this generation until the slow retry. Sending the same
/// invalid object every few seconds would only fill the API server's log.
///
/// `None` when the status could not be written; the caller then treats the
/// refusal as an ordinary failure.
async fn stall<K, S>(obj: &K, ctx: &Context<S>, refusal: &Refusal) -> Option<Action>
where
    K: Reconciled,
{
    let message = refusal.describe();
    let key = (obj.namespace(), obj.name_any());
    tracing::warn!(
        controller = %ctx.manager.name(),
        namespace = key.0.as_deref().unwrap_or_default(),
        name = %key.1,
        refused = %refusal.kind,
        error = %message,
        retry_in_secs = ctx.refusals.hold.as_secs(),
        "the API server refused an object built from the spec; stalled until the spec changes"
    );
    let api: Api<K> = Api::namespaced(ctx.client.clone(), key.0.as_deref()?);
    // The cached object can be older than the controller's own last status
    // write, and a write on top of it would be refused as stale.
    let fresh = match api.get_opt(&key.1).await {
        Ok(Some(fresh)) => fresh,
        Ok(None) => return Some(Action::await_change()),
        Err(err) => {
            let err = Error::kube(format!("get {} {}", K::kind(&()), key.1), err);
            tracing::warn!(error = %report(&err), "could not read the object to stall it");
            return None;
        }
    };
    // The spec changed while the reconcile ran: what was refused may not be
    // what the new spec builds. Look again at once.
    if fresh.meta().generation != obj.meta().generation || fresh.uid() != obj.uid() {
        return Some(Action::requeue(Duration::from_secs(1)));
    }
    let outcome = Outcome::stalled(CHILD_REFUSED, &message);
    let now = homelab_api::conditions::now();
    match ctx.manager.write_outcome(&api, &fresh, &outcome, now).await {
        Ok(StatusWrite::Stale) => Some(Action::requeue(Duration::from_secs(1))),
        Ok(write) => {
            ctx.refusals
                .refused(&key, fresh.uid(), fresh.meta().generation, Instant::now());
            // The status says it for as long as it lasts; the Event is for the
            // moment it starts (or its words change).
            if write.wrote() {
                ctx.events
                    .warning(&fresh, CHILD_REFUSED, "Apply", message)
                    .await;
            }
            Some(Action::requeue(ctx.refusals.hold))
        }
        Err(err) => {
            tracing::warn!(error = %report(&err), "could not write the refusal into the status");
            None
        }
    }
}

/// Which objects had a child refused, at which generation, and until when
/// their reconciles wait: a refusal of what a spec builds cannot heal until
/// the spec changes (a new generation), except through something the
/// controller does not watch (an admission policy relaxed), which the slow
/// retry catches.
struct RefusalGate {
    /// How long a refused generation waits before it is tried again.
    hold: Duration,
    /// Per (namespace, name): the uid and generation refused, and until when.
    refused: Mutex<HashMap<(Option<String>, String), Held>>,
}

struct Held {
    uid: Option<String>,
    generation: Option<i64>,
    until: Instant,
}

impl RefusalGate {
    fn new(hold: Duration) -> Self {
        Self {
            hold,
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// How long the reconcile of this object (uid, generation) should still
    /// wait; `None` when it should run.
    fn holds(
        &self,
        key: &(Option<String>, String),
        uid: Option<String>,
        generation: Option<i64>,
        now: Instant,
    ) -> Option<Duration> {
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        let held = refused.get(key)?;
        // A recreated object of the same name starts again at generation 1.
        (held.uid == uid && held.generation == generation && now < held.until)
            .then(|| held.until - now)
    }

    fn refused(
        &self,
        key: &(Option<String>, String),
        uid: Option<String>,
        generation: Option<i64>,
        now: Instant,
    ) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        // Deleted objects are never reconciled again to clear their entry.
        refused.retain(|_, held| held.until + self.hold > now);
        refused.insert(
            key.clone(),
            Held {
                uid,
                generation,
                until: now + self.hold,
            },
        );
    }

    fn clear(&self, key: &(Option<String>, String)) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        refused.remove(key);
    }
}

/// After a failed reconcile: log, publish a Warning Event, back off.
fn error_policy<K, S, E>(obj: Arc<K>, err: &E, ctx: Arc<Context<S>>) -> Action
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    S: Send + Sync + 'static,
    E: ReconcileError,
{
    let key = (obj.namespace(), obj.name_any());
    let delay = ctx.backoff.failed(&key);
    let message = report(err);
    tracing::warn!(
        controller = %ctx.manager.name(),
        namespace = key.0.as_deref().unwrap_or_default(),
        name = %key.1,
        error = %message,
        kind = err.metric_label(),
        retry_in_secs = delay.as_secs(),
        "reconcile failed"
    );
    let reason = err.event_reason();
    let events = ctx.events.clone();
    tokio::spawn(async move {
        events.warning(&*obj, reason, "Reconcile", message).await;
    });
    Action::requeue(delay)
}

fn log_result<K, E>(result: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>)
where
    K: Resource,
    K::DynamicType: Debug,
    E: std::error::Error,
{
    match result {
        Ok((obj, action)) => tracing::trace!(object = %obj.name, ?action, "reconciled"),
        // Logged by the error policy and by the watch probes.
        Err(controller::Error::ReconcilerFailed(..) | controller::Error::QueueError(_)) => {}
        Err(controller::Error::ObjectNotFound(obj)) => {
            tracing::debug!(object = %obj.name, "object gone before its reconcile");
        }
        Err(err) => tracing::warn!(error = %report(&err), "controller error"),
    }
}

/// Resolves on the first SIGTERM/SIGINT, and on the second.
fn termination_signals() -> Result<
    (
        impl Future<Output = ()> + Send,
        impl Future<Output = ()> + Send,
    ),
    Error,
> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        for (n, tx) in [first_tx, second_tx].into_iter().enumerate() {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if n == 0 {
                tracing::info!(
                    signal = name,
                    "asked to stop; send it again to stop at once"
                );
            } else {
                tracing::warn!(
                    signal = name,
                    "asked again: stopping without waiting for reconciles"
                );
            }
            let _ = tx.send(());
        }
    });
    Ok((first_rx.map(|_| ()), second_rx.map(|_| ())))
}

/// Delays every request by `window` and merges the requests for one object
/// that arrive within it: the pod created, scheduled and Ready in a burst wakes
/// its owner once.
fn settle<K>(
    requests: impl futures::Stream<Item = ObjectRef<K>> + Send + 'static,
    window: Duration,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + 'static,
{
    kube::runtime::scheduler(
        requests.map(move |obj| kube::runtime::scheduler::ScheduleRequest {
            message: obj,
            run_at: tokio::time::Instant::now() + window,
        }),
    )
}

/// The owners of kind `K` that control an object (through its controller
/// owner reference).
fn owners<K>(meta: &ObjectMeta) -> impl Iterator<Item = ObjectRef<K>> + '_
where
    K: Resource<DynamicType = ()>,
{
    let ns = meta.namespace.as_deref();
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| {
            o.controller == Some(true)
                && o.kind == K::kind(&())
                && o.api_version == K::api_version(&())
        })
        .map(move |o| {
            let owner = ObjectRef::<K>::new(&o.name);
            match ns {
                Some(ns) => owner.within(ns),
                None => owner,
            }
        })
}

/// What each watched object last hashed to, to wake only on relevant changes.
#[derive(Default)]
struct Changes {
    /// By uid.
    last: HashMap<String, u64>,
    /// The first list is done: what it lists wakes nothing (the main watch
    /// reconciles everything at start).
    listed: bool,
    /// Whether an object's first appearance wakes anyone. Not for what the
    /// controller creates itself: the reconcile that applied it used the answer
    /// already, and the watch can deliver the new object before that answer
    /// has been recorded as the controller's own write.
    births_wake: bool,
}

impl Changes {
    fn new(births_wake: bool) -> Self {
        Self {
            births_wake,
            ..Self::default()
        }
    }

    fn woken<O, K>(
        &mut self,
        event: watcher::Event<O>,
        relevant: &impl Fn(&O) -> Option<u64>,
        concerned: &impl Fn(&O) -> Vec<ObjectRef<K>>,
    ) -> Vec<ObjectRef<K>>
    where
        O: Resource<DynamicType = ()>,
        K: Resource,
    {
        let wakes = match &event {
            watcher::Event::Init => false,
            watcher::Event::InitDone => {
                self.listed = true;
                false
            }
            watcher::Event::Delete(obj) => {
                if let Some(uid) = &obj.meta().uid {
                    self.last.remove(uid);
                }
                true
            }
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let uid = obj.meta().uid.clone().unwrap_or_default();
                match relevant(obj) {
                    // Nothing of it matters (any more): a pod no scheduler has
                    // refused wakes nobody, but one that was refused and is now
                    // placed after all wakes its owner once.
                    None => self.last.remove(&uid).is_some() && self.listed,
                    Some(hash) => match self.last.insert(uid, hash) {
                        Some(before) => before != hash,
                        None => self.listed && self.births_wake,
                    },
                }
            }
        };
        match event {
            watcher::Event::Delete(obj)
            | watcher::Event::Apply(obj)
            | watcher::Event::InitApply(obj)
                if wakes =>
            {
                let woken = concerned(&obj);
                if !woken.is_empty() {
                    tracing::trace!(
                        kind = %O::kind(&()),
                        name = %obj.meta().name.as_deref().unwrap_or_default(),
                        woken = woken.len(),
                        "a change wakes"
                    );
                }
                woken
            }
            _ => Vec::new(),
        }
    }
}

/// A hash of what an object is apart from its status: its spec (through
/// `generation`), labels, annotations, finalizers and deletion.
fn all_but_status<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let mut hasher = std::hash::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0)
        .hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("the referenced Secret is missing")]
        MissingSecret,
    }

    impl ReconcileError for TestError {
        fn metric_label(&self) -> &'static str {
            "missing_secret"
        }
        fn event_reason(&self) -> &'static str {
            "SecretNotFound"
        }
    }

    #[test]
    fn errors_carry_fixed_labels_and_reasons() {
        let err = TestError::MissingSecret;
        assert_eq!(err.metric_label(), "missing_secret");
        assert_eq!(err.event_reason(), "SecretNotFound");
        assert_eq!(Error::ControllerStopped.event_reason(), RECONCILE_FAILED);
        assert_eq!(
            ReconcileError::metric_label(&Error::ControllerStopped),
            "shutdown"
        );
    }

    #[test]
    fn a_refused_generation_waits_until_the_spec_changes_or_the_hold_ends() {
        let gate = RefusalGate::new(Duration::from_secs(300));
        let key = (Some("home".to_owned()), "jellyfin".to_owned());
        let uid = || Some("u-1".to_owned());
        let t0 = Instant::now();
        assert_eq!(gate.holds(&key, uid(), Some(3), t0), None);
        gate.refused(&key, uid(), Some(3), t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            gate.holds(&key, uid(), Some(3), later),
            Some(Duration::from_secs(240))
        );
        // A new spec, or the object deleted and made again, runs at once.
        assert_eq!(gate.holds(&key, uid(), Some(4), later), None);
        assert_eq!(
            gate.holds(&key, Some("u-2".to_owned()), Some(3), later),
            None
        );
        // The slow retry.
        assert_eq!(
            gate.holds(&key, uid(), Some(3), t0 + Duration::from_secs(300)),
            None
        );
        gate.clear(&key);
        assert_eq!(gate.holds(&key, uid(), Some(3), later), None);
    }

    #[test]
    fn old_refusals_are_dropped() {
        let gate = RefusalGate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let gone = (Some("home".to_owned()), "gone".to_owned());
        gate.refused(&gone, None, Some(1), t0);
        gate.refused(
            &(Some("home".to_owned()), "other".to_owned()),
            None,
            Some(1),
            t0 + Duration::from_secs(30),
        );
        let refused = gate.refused.lock().unwrap();
        assert!(!refused.contains_key(&gone));
        assert_eq!(refused.len(), 1);
    }

    /// Feeds `events` of ConfigMaps through `changes`, each waking the
    /// ConfigMap of its own name when `relevant` says so: the names woken.
    fn woken_by(
        changes: &mut Changes,
        events: Vec<watcher::Event<k8s_openapi::api::core::v1::ConfigMap>>,
    ) -> Vec<String> {
        use k8s_openapi::api::core::v1::ConfigMap;
        let relevant = |cm: &ConfigMap| {
            cm.data
                .as_ref()
                .and_then(|d| d.get("relevant"))
                .map(crate::cache::hash_of)
        };
        let concerned = |cm: &ConfigMap| vec![ObjectRef::<ConfigMap>::from_obj(cm)];
        events
            .into_iter()
            .flat_map(|event| changes.woken(event, &relevant, &concerned))
            .map(|r| r.name)
            .collect()
    }

    fn config_map(name: &str, relevant: Option<&str>) -> k8s_openapi::api::core::v1::ConfigMap {
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.name = Some(name.to_owned());
        cm.metadata.uid = Some(format!("uid-{name}"));
        cm.data = relevant.map(|v| [("relevant".to_owned(), v.to_owned())].into());
        cm
    }

    #[test]
    fn what_the_first_list_holds_wakes_nobody_and_later_changes_wake_once() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let mut changes = Changes::new(true);
        let listed = woken_by(
            &mut changes,
            vec![Init, InitApply(config_map("a", Some("1"))), InitDone],
        );
        assert!(listed.is_empty(), "{listed:?}");
        let woken = woken_by(
            &mut changes,
            vec![
                // The same again (a resync, a status write): nothing.
                Apply(config_map("a", Some("1"))),
                Apply(config_map("a", Some("2"))),
                // Born after the list, with something that matters.
                Apply(config_map("b", Some("1"))),
                // Born with nothing that matters yet.
                Apply(config_map("c", None)),
                Delete(config_map("a", Some("2"))),
            ],
        );
        assert_eq!(woken, ["a", "b", "a"]);
    }

    #[test]
    fn what_the_controller_creates_wakes_nobody_when_it_appears() {
        use watcher::Event::{Apply, Delete, Init, InitDone};
        let mut changes = Changes::new(false);
        let woken = woken_by(
            &mut changes,
            vec![
                Init,
                InitDone,
                Apply(config_map("made", Some("1"))),
                Apply(config_map("made", Some("2"))),
                Delete(config_map("made", Some("2"))),
            ],
        );
        assert_eq!(woken, ["made", "made"]);
    }

    #[test]
    fn what_stops_mattering_wakes_once() {
        use watcher::Event::{Apply, Init, InitDone};
        let mut changes = Changes::new(true);
        let woken = woken_by(
            &mut changes,
            vec![
                Init,
                InitDone,
                // A pod refused by the scheduler, then placed after all.
                Apply(config_map("pod", Some("refused"))),
                Apply(config_map("pod", None)),
                Apply(config_map("pod", None)),
            ],
        );
        assert_eq!(woken, ["pod", "pod"]);
    }

    #[test]
    fn a_status_change_alone_hashes_the_same() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let mut obj = ConfigMap::default();
        obj.metadata.generation = Some(1);
        obj.metadata.resource_version = Some("10".into());
        let before = all_but_status(&obj);
        // A status write changes the resourceVersion, not the generation.
        obj.metadata.resource_version = Some("11".into());
        assert_eq!(all_but_status(&obj), before);
        obj.metadata.generation = Some(2);
        assert_ne!(all_but_status(&obj), before);
        let spec_changed = all_but_status(&obj);
        obj.metadata.finalizers = Some(vec!["foregroundDeletion".into()]);
        assert_ne!(all_but_status(&obj), spec_changed);
    }
}
