//! What an availability message says. Gateways disagree on the format:
//! zigbee2mqtt 1.x publishes `online`, 2.x `{"state":"online"}`; zwave-js-ui
//! `true` or `{"value":true,"time":...}`; ESPHome `online`. All are understood
//! whatever the preset, so an upgrade of the gateway does not break the watch.

/// The online and offline payloads a gateway uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payloads {
    /// The payload meaning online.
    pub online: String,
    /// The payload meaning offline.
    pub offline: String,
}

/// Whether `payload` says online (`Some(true)`), offline (`Some(false)`), or
/// something else (`None`: the status shows it rather than guessing).
#[must_use]
pub fn interpret(payload: &[u8], expected: &Payloads) -> Option<bool> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    if text == expected.online {
        return Some(true);
    }
    if text == expected.offline {
        return Some(false);
    }
    let word = |s: &str| {
        if s == expected.online {
            Some(true)
        } else if s == expected.offline {
            Some(false)
        } else {
            None
        }
    };
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::Object(map) => match (map.get("state"), map.get("value")) {
            (Some(serde_json::Value::String(s)), _) => word(s),
            (_, Some(serde_json::Value::Bool(b))) => Some(*b),
            (_, Some(serde_json::Value::String(s))) => word(s),
            _ => None,
        },
        _ => None,
    }
}

/// A payload shown to a person: at most 64 characters, lossy UTF-8.
#[must_use]
pub fn preview(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Payloads {
        Payloads {
            online: "online".into(),
            offline: "offline".into(),
        }
    }

    #[test]
    fn zigbee2mqtt_before_and_after_2_0() {
        assert_eq!(interpret(b"online", &plain()), Some(true));
        assert_eq!(interpret(b"offline", &plain()), Some(false));
        assert_eq!(interpret(br#"{"state":"online"}"#, &plain()), Some(true));
        assert_eq!(interpret(br#"{"state":"offline"}"#, &plain()), Some(false));
    }

    #[test]
    fn zwave_js_ui_booleans() {
        assert_eq!(interpret(b"true", &plain()), Some(true));
        assert_eq!(interpret(b"false", &plain()), Some(false));
        assert_eq!(
            interpret(br#"{"time":1732000000000,"value":true}"#, &plain()),
            Some(true)
        );
        assert_eq!(interpret(br#"{"value":false}"#, &plain()), Some(false));
    }

    #[test]
    fn custom_payloads() {
        let custom = Payloads {
            online: "UP".into(),
            offline: "DOWN".into(),
        };
        assert_eq!(interpret(b" UP\n", &custom), Some(true));
        assert_eq!(interpret(b"DOWN", &custom), Some(false));
        assert_eq!(interpret(b"online", &custom), None);
    }

    #[test]
    fn anything_else_is_unknown() {
        assert_eq!(interpret(b"", &plain()), None);
        assert_eq!(interpret(b"\xff\xfe", &plain()), None);
        assert_eq!(interpret(br#"{"state":"booting"}"#, &plain()), None);
        assert_eq!(interpret(b"42", &plain()), None);
    }

    #[test]
    fn previews_are_short() {
        assert_eq!(preview(b" online \n"), "online");
        let long = "x".repeat(100);
        assert_eq!(preview(long.as_bytes()).chars().count(), 65);
    }
}
