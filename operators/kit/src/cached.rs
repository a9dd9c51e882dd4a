//! Reads of the runner's caches: what a reconcile copies out of them, and
//! which objects a change of a watched one wakes.
//!
//! A reconcile copies what it reads so that it works on one consistent view
//! while the watches go on filling the caches.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// Every object in `store`.
#[must_use]
pub fn copies<O>(store: &Store<O>) -> Vec<O>
where
    O: Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// The object `name` of `namespace` in `store`, if it holds one.
#[must_use]
pub fn copy_of<O>(store: &Store<O>, namespace: &str, name: &str) -> Option<O>
where
    O: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|o| (*o).clone())
}

/// The objects of `namespace` in `store` that carry every label of `selector`
/// (all of the namespace's when it is empty).
#[must_use]
pub fn labelled<O>(store: &Store<O>, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<O>
where
    O: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| {
            o.namespace().as_deref() == Some(namespace)
                && selector.iter().all(|(k, v)| o.labels().get(k) == Some(v))
        })
        .map(|o| (*o).clone())
        .collect()
}

/// The object of kind `K` that `meta`'s `label` names, in the same namespace:
/// the owner a pod carries the name of.
#[must_use]
pub fn by_label<K>(meta: &ObjectMeta, label: &str) -> Option<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
{
    let name = meta.labels.as_ref()?.get(label)?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref().unwrap_or_default()))
}

/// The objects in `store` that `refers` says name `changed` (by its name), in
/// `changed`'s namespace: the servers mounting a claim, the gateways on a pin.
#[must_use]
pub fn referring<K, O>(
    store: &Store<K>,
    changed: &O,
    refers: impl Fn(&K, &str) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    O: Resource,
{
    let (name, namespace) = (changed.name_any(), changed.namespace());
    store
        .state()
        .into_iter()
        .filter(|k| k.namespace() == namespace && refers(k, &name))
        .map(|k| ObjectRef::from_obj(&*k))
        .collect()
}

/// A cache holding `objects`, as if its watch had listed them, and the writer
/// that keeps it (the cache is never ready once that is dropped): for tests of
/// what reads the caches.
#[must_use]
pub fn filled<K>(objects: Vec<K>) -> (Store<K>, Writer<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (reader, writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use serde_json::json;

    fn pod(namespace: &str, name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        }))
        .unwrap()
    }

    fn names(mut pods: Vec<Pod>) -> Vec<String> {
        pods.sort_by_key(ResourceExt::name_any);
        pods.iter().map(ResourceExt::name_any).collect()
    }

    #[test]
    fn copies_by_name_and_by_labels() {
        let (pods, _w) = filled(vec![
            pod("home", "jellyfin-1", json!({"server": "jellyfin"})),
            pod("home", "plex-1", json!({"server": "plex", "tier": "media"})),
            pod("lab", "jellyfin-2", json!({"server": "jellyfin"})),
        ]);
        assert_eq!(copies(&pods).len(), 3);
        assert!(copy_of(&pods, "home", "plex-1").is_some());
        assert!(copy_of(&pods, "lab", "plex-1").is_none());
        let selector = [("server".to_owned(), "jellyfin".to_owned())].into();
        assert_eq!(names(labelled(&pods, "home", &selector)), ["jellyfin-1"]);
        assert_eq!(
            names(labelled(&pods, "home", &BTreeMap::new())),
            ["jellyfin-1", "plex-1"]
        );
    }

    #[test]
    fn a_label_names_its_owner_in_the_same_namespace() {
        let p = pod("home", "jellyfin-abc", json!({"server": "jellyfin"}));
        let owner: Option<ObjectRef<ConfigMap>> = by_label(&p.metadata, "server");
        assert_eq!(owner, Some(ObjectRef::new("jellyfin").within("home")));
        assert_eq!(by_label::<ConfigMap>(&p.metadata, "gateway"), None);
    }

    #[test]
    fn referrers_are_found_in_the_changed_object_s_namespace() {
        let owner = |namespace: &str, name: &str, claim: &str| -> ConfigMap {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace},
                "data": {"claim": claim},
            }))
            .unwrap()
        };
        let (owners, _w) = filled(vec![
            owner("home", "jellyfin", "media"),
            owner("home", "plex", "other"),
            owner("lab", "navidrome", "media"),
        ]);
        let claim = pod("home", "media", json!({}));
        let woken = referring(&owners, &claim, |o: &ConfigMap, name| {
            o.data
                .as_ref()
                .and_then(|d| d.get("claim"))
                .map(String::as_str)
                == Some(name)
        });
        assert_eq!(woken, [ObjectRef::new("jellyfin").within("home")]);
    }
}
