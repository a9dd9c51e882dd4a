//! Integration tests against the local control plane (`e2e/cluster`): real
//! kube-apiserver, etcd, controller-manager and scheduler, kwok nodes.
//! They share one test binary so the workspace links it once.

// A test that cannot get what it needs fails loudly; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alert_rules;
mod api_contract;
mod argocd_health;
mod chart;
mod chart_tokens;
mod etcdbackup;
mod mediaserver;
mod metrics_scrape;
mod node_agent_policy;
mod refusals;
mod sensorgateway;
mod status_writes;
#[path = "../shared/usb.rs"]
mod usb;
mod usb_stick_moves;
mod usbdevicepin;
