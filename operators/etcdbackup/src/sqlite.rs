//! k3s's default datastore: an online copy through SQLite's backup API, which reads a
//! consistent state while k3s keeps writing (in WAL mode readers never block the
//! writer), and the check that a copy opens and is sound.

use std::path::Path;

use rusqlite::backup::StepResult;
use rusqlite::{Connection, OpenFlags};

/// Why SQLite failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct SqliteError {
    what: String,
    #[source]
    source: rusqlite::Error,
}

fn fail(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> SqliteError {
    let what = what.into();
    move |source| SqliteError { what, source }
}

/// Copies the live database at `source` into a new file `copy`.
///
/// # Errors
/// When either database cannot be opened or the copy fails.
pub fn backup(source: &Path, copy: &Path) -> Result<(), SqliteError> {
    // Not read-only: a WAL database needs its -shm file, which a read-only
    // connection cannot create.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail(format!("open {}", source.display())))?;
    // k3s writes constantly; wait for its write locks rather than fail at once.
    src.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(fail("set a busy timeout"))?;
    let mut dst = Connection::open(copy).map_err(fail(format!("create {}", copy.display())))?;
    let backup = rusqlite::backup::Backup::new(&src, &mut dst)
        .map_err(fail(format!("start the backup of {}", source.display())))?;
    // All pages in one step (-1): one read transaction, so writes by k3s during the
    // copy cannot restart it over and over (rusqlite's run_to_completion refuses -1).
    for _ in 0..600 {
        match backup
            .step(-1)
            .map_err(fail(format!("copy {}", source.display())))?
        {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            _ => {}
        }
    }
    Err(SqliteError {
        what: format!("copy {}", source.display()),
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("the database stayed locked for a minute".into()),
        ),
    })
}

/// Opens the copy and runs `PRAGMA integrity_check`; returns its answer.
///
/// # Errors
/// When the copy cannot be opened or checked.
pub fn integrity_check(copy: &Path) -> Result<String, SqliteError> {
    let db = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail(format!("open {}", copy.display())))?;
    let rows: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(fail(format!("check {}", copy.display())))?;
    Ok(rows.join("; "))
}
