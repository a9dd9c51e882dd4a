//! The kit's names for what [`homelab_api::conditions`] holds.

pub use homelab_api::ConditionStatus as Status;
pub use homelab_api::conditions::reasons::{CHILD_REFUSED, HOST_PATH_NOT_ALLOWED};
pub use homelab_api::conditions::types::{READY, RECONCILING, STALLED};
pub use homelab_api::conditions::*;
