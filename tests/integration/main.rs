//! Integration tests against the local control plane (`e2e/cluster`): real
//! kube-apiserver, etcd, controller-manager and scheduler, kwok nodes.
//! They share one test binary so the workspace links it once.

mod api_contract;
mod scheduling;
mod garbage_collection;
