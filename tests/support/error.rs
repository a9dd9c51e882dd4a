use std::time::Duration;

/// Why a piece of test support could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not run `e2e/cluster {command}`")]
    ClusterCommandSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`e2e/cluster {command}` failed: {output}")]
    ClusterCommand { command: String, output: String },
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("could not read the kubeconfig at {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("could not build a client for the test cluster")]
    Client(#[source] kube::Error),
    #[error("the API server refused a request while {doing}")]
    Api {
        doing: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not read {path}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not parse {path}")]
    Parse {
        path: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("gave up after {waited:?} waiting for {what}; last seen: {last_seen}")]
    Timeout {
        what: String,
        waited: Duration,
        last_seen: String,
    },
    #[error("{what} stopped holding: {seen}")]
    Broken { what: String, seen: String },
    #[error("could not write {path}")]
    WriteFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build a test object")]
    Json(#[source] serde_json::Error),
    #[error("the watch for {what} failed")]
    Watch {
        what: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
}

impl Error {
    pub(crate) fn api(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let doing = doing.into();
        move |source| Error::Api { doing, source }
    }
}
