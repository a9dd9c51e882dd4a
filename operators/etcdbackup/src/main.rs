//! `etcd-backup controller`: the EtcdBackup controller (settings from the
//! environment, see `homelab_kit::settings`, and the namespaces and host paths it
//! allows, see `homelab_etcdbackup::policy`).
//! `etcd-backup snapshot --name … --endpoints … --dest-dir …|--s3-bucket …`: one
//! backup run, as the CronJob's container does it; exits 1 when it failed.

use std::process::ExitCode;

use homelab_etcdbackup::{args, run};
use homelab_kit::telemetry::{LOG_FORMAT_ENV, LogFormat};

const USAGE: &str = "usage: etcd-backup controller | etcd-backup snapshot --name NAME (--endpoints URL[,URL] [--cacert F --cert F --key F] | --datastore sqlite --sqlite-path F) (--dest-dir DIR | --s3-bucket B [--s3-endpoint URL] [--s3-region R] [--s3-prefix P] [--s3-path-style] [--s3-ca F]) [--compression zstd|none] [--keep-last N] [--keep-daily N] [--keep-weekly N] [--trial-restore] [--scratch-dir DIR] [--report-file F]";

#[tokio::main]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let format = std::env::var(LOG_FORMAT_ENV)
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(LogFormat::Text);
    if let Err(e) = homelab_kit::telemetry::init_with(format) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    match argv.first().map(String::as_str) {
        Some("controller") => controller().await,
        Some("snapshot") => snapshot(&argv[1..]).await,
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn controller() -> ExitCode {
    let served = homelab_kit::operator::serve::<homelab_etcdbackup::Controller>().await;
    if let Err(e) = &served {
        tracing::error!(error = %homelab_kit::error::report(e), "controller stopped");
    }
    if served.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn snapshot(argv: &[String]) -> ExitCode {
    let config = match args::parse(argv, |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = run::run(&config).await;
    if let Err(e) = report.write(&config.report_file) {
        tracing::warn!(file = %config.report_file.display(), error = %e, "could not write the report");
    }
    if report.ok {
        tracing::info!(report = %report.to_message(), "backup done");
        ExitCode::SUCCESS
    } else {
        tracing::error!(
            error = report.error.as_deref().unwrap_or_default(),
            "backup failed"
        );
        ExitCode::FAILURE
    }
}
