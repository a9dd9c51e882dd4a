//! What each preset knows about its server: image, port, paths, health check,
//! the architectures its image is published for, and how locked down its
//! container can run.

use homelab_api::mediaserver::MediaPreset;
use homelab_api::workload::Architecture;

/// How the server's health is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// An HTTP GET on this path answers 200 when the server is up.
    Http(&'static str),
    /// Only that the port accepts connections (an image we know nothing about).
    Tcp,
}

/// How far the container's privileges can be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Pod security "restricted": non-root with this uid/gid, no privilege
    /// escalation, every capability dropped.
    Restricted {
        /// uid, gid and fsGroup of the server.
        id: i64,
    },
    /// The image starts as root and drops to its own user itself (Plex's
    /// s6-overlay init), so it keeps the few capabilities that switch needs.
    DropsPrivilegesItself,
}

/// Defaults of one preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// `app.kubernetes.io/name` of what is built.
    pub app: &'static str,
    /// Image when the spec sets none (`None` for Generic, which must set one).
    pub image: Option<&'static str>,
    /// Port when the spec sets none.
    pub port: Option<i32>,
    /// Where the server keeps its config and database.
    pub config_path: &'static str,
    /// Where the server keeps its transcoding and image cache.
    pub cache_path: &'static str,
    /// The health check.
    pub health: Health,
    /// Architectures the image is published for, used when the spec lists none.
    pub architectures: &'static [Architecture],
    /// How locked down the container runs.
    pub security: Security,
    /// Extra environment the image reads to find its paths.
    pub env: &'static [(&'static str, &'static str)],
}

/// Supplemental groups when `transcoding.renderGroupId` is unset: `video` is
/// 44 on every Debian and Ubuntu host; `render` is allocated when the
/// package creating it is installed, and 109 is where it usually lands.
pub const DEFAULT_RENDER_GROUPS: &[i64] = &[44, 109];

/// The uid most home media images expect (linuxserver.io's PUID default).
const MEDIA_USER: i64 = 1000;

impl Preset {
    /// The defaults of `preset`.
    #[must_use]
    pub const fn of(preset: MediaPreset) -> Self {
        use Architecture::{Amd64, Arm, Arm64};
        match preset {
            MediaPreset::Jellyfin => Self {
                app: "jellyfin",
                image: Some("docker.io/jellyfin/jellyfin:10.10.7"),
                port: Some(8096),
                config_path: "/config",
                cache_path: "/cache",
                health: Health::Http("/health"),
                architectures: &[Amd64, Arm64],
                security: Security::Restricted { id: MEDIA_USER },
                env: &[
                    ("JELLYFIN_DATA_DIR", "/config"),
                    ("JELLYFIN_CACHE_DIR", "/cache"),
                ],
            },
            // A release tag, not `latest`/`public`: those download whatever
            // Plex serves at each start, so what runs as root (see Security)
            // would be nothing anyone reviewed, and a restart could upgrade
            // the database behind the operator's back.
            MediaPreset::Plex => Self {
                app: "plex",
                image: Some("docker.io/plexinc/pms-docker:1.42.2.10156-f737b826c"),
                port: Some(32400),
                config_path: "/config",
                cache_path: "/transcode",
                health: Health::Http("/identity"),
                architectures: &[Amd64, Arm64],
                security: Security::DropsPrivilegesItself,
                env: &[],
            },
            MediaPreset::Navidrome => Self {
                app: "navidrome",
                image: Some("docker.io/deluan/navidrome:0.53.3"),
                port: Some(4533),
                config_path: "/data",
                cache_path: "/cache",
                health: Health::Http("/ping"),
                architectures: &[Amd64, Arm64, Arm],
                security: Security::Restricted { id: MEDIA_USER },
                env: &[("ND_DATAFOLDER", "/data"), ("ND_CACHEFOLDER", "/cache")],
            },
            // Nothing is known about the image: amd64 is the one
            // architecture every image is built for, so an arm64 node is
            // only used when the spec says the image runs there.
            MediaPreset::Generic => Self {
                app: "mediaserver",
                image: None,
                port: None,
                config_path: "/config",
                cache_path: "/cache",
                health: Health::Tcp,
                architectures: &[Amd64],
                security: Security::Restricted { id: MEDIA_USER },
                env: &[],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_kit::image::is_pinned;

    #[test]
    fn every_default_image_is_pinned_to_a_release() {
        for preset in [
            MediaPreset::Jellyfin,
            MediaPreset::Plex,
            MediaPreset::Navidrome,
            MediaPreset::Generic,
        ] {
            if let Some(image) = Preset::of(preset).image {
                assert!(is_pinned(image), "{preset:?}: {image}");
            }
        }
    }

    #[test]
    fn named_presets_bring_image_and_port() {
        for preset in [
            MediaPreset::Jellyfin,
            MediaPreset::Plex,
            MediaPreset::Navidrome,
        ] {
            let p = Preset::of(preset);
            assert!(p.image.is_some() && p.port.is_some(), "{preset:?}");
            assert!(p.architectures.contains(&Architecture::Amd64));
        }
        let generic = Preset::of(MediaPreset::Generic);
        assert_eq!((generic.image, generic.port), (None, None));
        assert_eq!(generic.architectures, &[Architecture::Amd64]);
    }
}
