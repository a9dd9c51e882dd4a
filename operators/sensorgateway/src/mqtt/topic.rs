//! MQTT topic filters: which topics a filter matches, and whether a string is a
//! valid filter at all (MQTT 3.1.1, section 4.7).

/// Whether `filter` is a valid topic filter: not empty, `+` only as a whole level,
/// `#` only as the whole last level, no NUL.
#[must_use]
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || filter.len() > 65_535 {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == last,
        other => !other.contains('+') && !other.contains('#'),
    })
}

/// Whether `topic` (a concrete topic, as published) is a valid topic name: not
/// empty, no wildcards.
#[must_use]
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0']) && topic.len() <= 65_535
}

/// Whether `filter` matches `topic`. Wildcards at the first level do not match
/// topics starting with `$` (the broker's own `$SYS` tree).
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut wanted = filter.split('/');
    let mut got = topic.split('/');
    loop {
        match (wanted.next(), got.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(w), Some(g)) if w == g => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_people_write_are_valid() {
        for f in [
            "zigbee2mqtt/bridge/state",
            "garden/+/moisture",
            "garden/#",
            "#",
            "+",
            "+/+",
            "a//b",
        ] {
            assert!(is_valid_filter(f), "{f}");
        }
    }

    #[test]
    fn misplaced_wildcards_are_invalid() {
        for f in ["", "garden/#/x", "garden/moist+", "a#", "gar+den/x", "#/a"] {
            assert!(!is_valid_filter(f), "{f:?}");
        }
    }

    #[test]
    fn topics_have_no_wildcards() {
        assert!(is_valid_topic("zwave/_CLIENTS/ZWAVE_GATEWAY-x/status"));
        assert!(!is_valid_topic("a/+"));
        assert!(!is_valid_topic(""));
    }

    #[test]
    fn matching_follows_the_levels() {
        assert!(matches("garden/+/moisture", "garden/bed-1/moisture"));
        assert!(!matches("garden/+/moisture", "garden/bed-1/temp"));
        assert!(!matches("garden/+/moisture", "garden/moisture"));
        assert!(matches("garden/#", "garden"));
        assert!(matches("garden/#", "garden/a/b/c"));
        assert!(matches("#", "anything/at/all"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("+/+", "a/b"));
        assert!(matches("a//b", "a//b"));
    }

    #[test]
    fn wildcards_skip_the_brokers_own_topics() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
    }
}
