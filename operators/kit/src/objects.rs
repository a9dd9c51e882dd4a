//! Per-object gauges, read from the controller's cache at each scrape, so they
//! can never be stale and a deleted object's series goes with it:
//!
//! - `homelab_objects{controller,kind}`: objects of the kind the controller sees;
//! - `homelab_object_ready{controller,kind,namespace,name}`: 1 when the object's
//!   `Ready` condition is True, else 0 ("what is down");
//! - `homelab_object_node_info{controller,kind,namespace,name,node}`: 1 on the
//!   node the object runs on or its device is plugged into ("where");
//! - `homelab_object_condition{controller,kind,namespace,name,condition}`: 1 while
//!   a condition the controller names is True, 0 while False ("why"), from
//!   [`ConditionGauges`].
//!
//! Object names as labels are bounded by the objects that exist (as in
//! kube-state-metrics); nothing else variable (no messages, no reasons) is a label.
//! Standby replicas export the same series: dashboards take `max by (namespace, name)`.

use std::fmt::Debug;

use homelab_api::ConditionStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

/// What the gauges say about one object; the controller reads it from status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectState {
    /// The `Ready` condition: `Some(true)` when True.
    pub ready: Option<bool>,
    /// Where the object runs or its device is, if anywhere.
    pub node: Option<String>,
}

/// Reads an object's [`ObjectState`] (a plain function of its status).
pub type ReadState<K> = fn(&K) -> ObjectState;

/// The collector over one controller's cache.
pub struct ObjectGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The controller's cache of its kind.
    store: Store<K>,
    /// Reads the state of one object.
    read: ReadState<K>,
}

impl<K> ObjectGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Gauges over `store`, reading each object with `read`.
    pub fn new(store: Store<K>, read: ReadState<K>) -> Self {
        Self { store, read }
    }
}

impl<K> Debug for ObjectGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectGauges")
            .field("kind", &K::kind(&()))
            .finish_non_exhaustive()
    }
}

impl<K> Collector for ObjectGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let kind = K::kind(&());
        let objects: Vec<_> = self
            .store
            .state()
            .into_iter()
            .map(|o| {
                let state = (self.read)(&o);
                (o.namespace().unwrap_or_default(), o.name_any(), state)
            })
            .collect();

        let count = i64::try_from(objects.len()).unwrap_or(i64::MAX);
        let gauge = ConstGauge::new(count);
        let mut metric = encoder.encode_descriptor(
            "objects",
            "Objects of the controller's kind in its cache",
            None,
            MetricType::Gauge,
        )?;
        gauge.encode(metric.encode_family(&[("kind", kind.as_ref())])?)?;

        let mut metric = encoder.encode_descriptor(
            "object_ready",
            "1 when the object's Ready condition is True, else 0",
            None,
            MetricType::Gauge,
        )?;
        for (namespace, name, state) in &objects {
            let labels = [
                ("kind", kind.as_ref()),
                ("namespace", namespace.as_str()),
                ("name", name.as_str()),
            ];
            ConstGauge::new(i64::from(state.ready == Some(true)))
                .encode(metric.encode_family(&labels)?)?;
        }

        let mut metric = encoder.encode_descriptor(
            "object_node_info",
            "1 on the node the object runs on (or its device is plugged into)",
            None,
            MetricType::Gauge,
        )?;
        for (namespace, name, state) in &objects {
            let Some(node) = &state.node else { continue };
            let labels = [
                ("kind", kind.as_ref()),
                ("namespace", namespace.as_str()),
                ("name", name.as_str()),
                ("node", node.as_str()),
            ];
            ConstGauge::new(1_i64).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The conditions of an object's status (empty while it has none).
pub type ReadConditions<K> = fn(&K) -> &[Condition];

/// `homelab_object_condition` over one controller's cache: one series per object
/// and per condition type in a fixed list the controller gives (alerts and panels
/// need `GatewayOnline` or `Stale`, not every condition). A condition that is
/// Unknown or unset has no series: "cannot tell" is neither 1 nor 0.
pub struct ConditionGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The controller's cache of its kind.
    store: Store<K>,
    /// The condition types exported.
    types: &'static [&'static str],
    /// Reads the conditions of one object.
    read: ReadConditions<K>,
}

impl<K> ConditionGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Gauges of the conditions `types` of every object in `store`.
    pub fn new(store: Store<K>, types: &'static [&'static str], read: ReadConditions<K>) -> Self {
        Self { store, types, read }
    }
}

impl<K> Debug for ConditionGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionGauges")
            .field("kind", &K::kind(&()))
            .field("types", &self.types)
            .finish_non_exhaustive()
    }
}

impl<K> Collector for ConditionGauges<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let kind = K::kind(&());
        let mut metric = encoder.encode_descriptor(
            "object_condition",
            "1 while the object's condition is True, 0 while False; absent while Unknown",
            None,
            MetricType::Gauge,
        )?;
        for object in self.store.state() {
            let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
            let conditions = (self.read)(&object);
            for type_ in self.types {
                let Some(condition) = conditions.iter().find(|c| c.type_ == *type_) else {
                    continue;
                };
                let value = match ConditionStatus::from_condition(condition) {
                    ConditionStatus::True => 1_i64,
                    ConditionStatus::False => 0,
                    ConditionStatus::Unknown => continue,
                };
                let labels = [
                    ("kind", kind.as_ref()),
                    ("namespace", namespace.as_str()),
                    ("name", name.as_str()),
                    ("condition", *type_),
                ];
                ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher;

    fn cm(name: &str, node: Option<&str>) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.to_owned());
        cm.metadata.namespace = Some("home".to_owned());
        if let Some(node) = node {
            cm.data = Some([("node".to_owned(), node.to_owned())].into());
        }
        cm
    }

    fn read(cm: &ConfigMap) -> ObjectState {
        let node = cm.data.as_ref().and_then(|d| d.get("node")).cloned();
        ObjectState {
            ready: Some(node.is_some()),
            node,
        }
    }

    #[test]
    fn gauges_follow_the_cache() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&watcher::Event::Apply(cm("jellyfin", Some("n100-1"))));
        writer.apply_watcher_event(&watcher::Event::Apply(cm("navidrome", None)));
        let mut metrics = crate::metrics::Metrics::new();
        metrics
            .sub_registry("mediaserver")
            .register_collector(Box::new(ObjectGauges::new(store, read)));
        let text = metrics.render().unwrap();
        for line in [
            r#"homelab_objects{controller="mediaserver",kind="ConfigMap"} 2"#,
            r#"homelab_object_ready{controller="mediaserver",kind="ConfigMap",namespace="home",name="jellyfin"} 1"#,
            r#"homelab_object_ready{controller="mediaserver",kind="ConfigMap",namespace="home",name="navidrome"} 0"#,
            r#"homelab_object_node_info{controller="mediaserver",kind="ConfigMap",namespace="home",name="jellyfin",node="n100-1"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(!text.contains(r#"name="navidrome",node"#), "{text}");

        writer.apply_watcher_event(&watcher::Event::Delete(cm("jellyfin", Some("n100-1"))));
        let text = metrics.render().unwrap();
        assert!(!text.contains("jellyfin"), "{text}");
    }

    fn condition(type_: &str, status: &str) -> Condition {
        let status = match status {
            "True" => homelab_api::ConditionStatus::True,
            "False" => homelab_api::ConditionStatus::False,
            _ => homelab_api::ConditionStatus::Unknown,
        };
        homelab_api::conditions::new_condition(
            type_,
            status,
            "Test",
            "",
            None,
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    /// "jellyfin" is online and fresh, "navidrome" offline and unsure of its
    /// sensors, anything else has no status.
    fn conditions(cm: &ConfigMap) -> &[Condition] {
        static JELLYFIN: std::sync::LazyLock<Vec<Condition>> = std::sync::LazyLock::new(|| {
            vec![
                condition("Online", "True"),
                condition("Fresh", "True"),
                condition("Other", "False"),
            ]
        });
        static NAVIDROME: std::sync::LazyLock<Vec<Condition>> = std::sync::LazyLock::new(|| {
            vec![condition("Online", "False"), condition("Fresh", "Unknown")]
        });
        match cm.metadata.name.as_deref() {
            Some("jellyfin") => JELLYFIN.as_slice(),
            Some("navidrome") => NAVIDROME.as_slice(),
            _ => &[],
        }
    }

    #[test]
    fn conditions_named_are_exported_unless_unknown() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for name in ["jellyfin", "navidrome", "plex"] {
            writer.apply_watcher_event(&watcher::Event::Apply(cm(name, None)));
        }
        let mut metrics = crate::metrics::Metrics::new();
        metrics
            .sub_registry("sensorgateway")
            .register_collector(Box::new(ConditionGauges::new(
                store,
                &["Online", "Fresh"],
                conditions,
            )));
        let text = metrics.render().unwrap();
        for line in [
            r#"homelab_object_condition{controller="sensorgateway",kind="ConfigMap",namespace="home",name="jellyfin",condition="Online"} 1"#,
            r#"homelab_object_condition{controller="sensorgateway",kind="ConfigMap",namespace="home",name="jellyfin",condition="Fresh"} 1"#,
            r#"homelab_object_condition{controller="sensorgateway",kind="ConfigMap",namespace="home",name="navidrome",condition="Online"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(!text.contains(r#"condition="Other""#), "{text}");
        assert!(
            !text.contains(r#"name="navidrome",condition="Fresh""#),
            "{text}"
        );
        assert!(!text.contains("plex"), "{text}");
    }

    #[test]
    fn condition_family_is_declared_without_objects() {
        let (store, _writer) = reflector::store::<ConfigMap>();
        let mut metrics = crate::metrics::Metrics::new();
        metrics
            .sub_registry("etcdbackup")
            .register_collector(Box::new(ConditionGauges::new(
                store,
                &["Stale"],
                conditions,
            )));
        let text = metrics.render().unwrap();
        assert!(
            text.contains("# TYPE homelab_object_condition gauge"),
            "{text}"
        );
    }
}
