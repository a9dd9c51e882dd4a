//! Writes the homelab CRDs, generated from the Rust types, into `crds/` (one file per
//! kind), or with `-` prints them to stdout as one multi-document YAML stream.
//!
//! Usage: `cargo run -p homelab-api --bin crdgen [DIR | -]` (DIR defaults to the
//! workspace's `crds/`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files = match homelab_api::crd::files() {
        Ok(files) => files,
        Err(error) => {
            eprintln!("crdgen: cannot render the CRDs: {error}");
            return ExitCode::FAILURE;
        }
    };
    let target = std::env::args().nth(1);
    if target.as_deref() == Some("-") {
        let stream: Vec<&str> = files.iter().map(|f| f.content.as_str()).collect();
        print!("{}", stream.join("---\n"));
        return ExitCode::SUCCESS;
    }
    let dir = target
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds"));
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("crdgen: cannot create {}: {error}", dir.display());
        return ExitCode::FAILURE;
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    for file in &files {
        let path = dir.join(&file.file_name);
        if let Err(error) = std::fs::write(&path, &file.content) {
            eprintln!("crdgen: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("crdgen: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
