//! Quoting for a POSIX shell: `status.restoreCommand` is meant to be pasted into a
//! root shell on a control-plane node, and the values it is built from (paths, a
//! bucket, keys, endpoints) come from an EtcdBackup's spec and from a run's report.
//! Each of them must reach the command as exactly one word, whatever it contains.

use std::borrow::Cow;

/// `value` as one word for `sh`: unchanged when it holds only characters no shell
/// treats specially (so the usual path or URL stays readable), otherwise in single
/// quotes, inside which `sh` interprets nothing but the closing quote; a `'` in the
/// value becomes `'\''` (close, an escaped quote, reopen).
#[must_use]
pub fn quote(value: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/@%+=".contains(c);
    // A leading `=` or `~` could still be read as an assignment or a home directory
    // in some positions; quoting them costs nothing.
    if !value.is_empty() && value.chars().all(plain) && !value.starts_with(['=', '~']) {
        return Cow::Borrowed(value);
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of `word`: its arguments, one per line.
    fn words(word: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {word}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{word}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn plain_paths_and_urls_stay_as_they_are() {
        for v in [
            "/var/backups/etcd/cluster-20260101T000000Z.db.zst",
            "s3://backups/etcd/cluster-1.db.zst",
            "https://minio.storage.svc:9000",
        ] {
            assert_eq!(quote(v), v);
        }
    }

    #[test]
    fn anything_else_reaches_the_shell_as_one_unchanged_word() {
        for v in [
            "/var/backups/my etcd/a b.db",
            "it's",
            "'",
            "\"double\"",
            "$(touch /tmp/pwned)",
            "`id`",
            "a; rm -rf /",
            "a && b | c > d",
            "$HOME",
            "~root",
            "*",
            "",
            "tab\there",
        ] {
            let q = quote(v);
            assert_eq!(words(&q), [v], "{v:?} quoted as {q}");
        }
    }

    #[test]
    fn quoting_is_visible_where_it_matters() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("x;y"), "'x;y'");
    }
}
