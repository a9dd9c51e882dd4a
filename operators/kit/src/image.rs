//! Container image references.

/// Whether `image` names one release: a tag other than `latest`, or a digest.
/// Without one, a node pulls whatever the registry says today, and a restart
/// can bring a version nobody reviewed.
#[must_use]
pub fn is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    // The tag follows the last ':' of the last path segment; a ':' before the
    // last '/' is a registry's port.
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':')
        .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_pinned() {
        assert!(is_pinned("docker.io/jellyfin/jellyfin:10.10.7"));
        assert!(is_pinned("registry.local:5000/media/server:1.2"));
        assert!(is_pinned("ghcr.io/x/y@sha256:0123abcd"));
        assert!(!is_pinned("docker.io/plexinc/pms-docker:latest"));
        assert!(!is_pinned("docker.io/plexinc/pms-docker"));
        assert!(!is_pinned("registry.local:5000/media/server"));
        assert!(!is_pinned("server:"));
    }
}
