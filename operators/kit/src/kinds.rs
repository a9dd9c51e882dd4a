//! What the kit asks of the kinds a controller watches, owns and reconciles,
//! named once: each is implemented by every type that meets it.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind a watch reads whole and a cache keeps.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<O> Watched for O where
    O: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// A namespaced [`Watched`] kind: what a controller owns, or finds in the
/// namespaces it watches.
pub trait Namespaced: Watched + Resource<Scope = NamespaceResourceScope> {}

impl<C> Namespaced for C where C: Watched + Resource<Scope = NamespaceResourceScope> {}

/// The kind a controller reconciles: [`Namespaced`], and written back (its
/// status, an outcome) as well as read.
pub trait Reconciled: Namespaced + Serialize {}

impl<K> Reconciled for K where K: Namespaced + Serialize {}

/// A kind a controller applies whole with server-side apply, and reads back as
/// stored.
pub trait Applied:
    Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug
{
}

impl<C> Applied for C where
    C: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug
{
}
