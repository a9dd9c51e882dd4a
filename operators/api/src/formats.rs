//! Formats shared by several kinds, as CEL rules with the message a person sees when
//! one fails: Kubernetes object and node names, ports, paths, identifiers without
//! control characters, positive durations.
//!
//! The regular expressions are written as macros that expand to string literals, so
//! `concat!` can build both a rule and the tests from one text. They use RE2 syntax
//! (what CEL's `matches` runs) and avoid backslashes where a character class says the
//! same (`[.]` for a dot), because every backslash would need escaping twice: once for
//! Rust, once for the CEL string literal.

/// A DNS-1123 subdomain: what Kubernetes accepts as the name of a node, a Secret, a
/// claim, a StorageClass. The length (at most 253) is a `maxLength` on the field.
macro_rules! dns_subdomain_pattern {
    () => {
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    };
}

/// A TCP port from 1 to 65535, without leading zeros (0 and 65536 are not ports a
/// broker can listen on).
macro_rules! port_pattern {
    () => {
        "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    };
}

/// A host in a URL: a DNS name or IPv4 address, or an IPv6 address in brackets.
macro_rules! host_pattern {
    () => {
        r"([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])"
    };
}

/// A `.` or `..` path segment, anywhere in a path.
macro_rules! dot_segment_pattern {
    () => {
        "(^|/)[.][.]?(/|$)"
    };
}

pub(crate) use {dot_segment_pattern, host_pattern, port_pattern};

/// CEL: the string is a DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_RULE: &str = concat!("self.matches('", dns_subdomain_pattern!(), "')");

/// CEL: every string in the list is a node name.
pub const NODE_NAMES_RULE: &str =
    concat!("self.all(n, n.matches('", dns_subdomain_pattern!(), "'))");

/// Message for a node name that is not one.
pub const NODE_NAME_MESSAGE: &str = "must be a node name as `kubectl get nodes` shows it: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, such as pi4-1";

/// Message for [`NODE_NAMES_RULE`].
pub const NODE_NAMES_MESSAGE: &str = "each node must be a node name as `kubectl get nodes` shows it: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, such as pi4-1";

/// Message for a Secret name that is not one.
pub const SECRET_NAME_MESSAGE: &str = "must be the name of a Secret in the same namespace: lowercase letters, digits, '-' and '.', such as mqtt-credentials";

/// Message for a PersistentVolumeClaim name that is not one.
pub const CLAIM_NAME_MESSAGE: &str = "must be the name of a PersistentVolumeClaim in the same namespace: lowercase letters, digits, '-' and '.', such as media-movies";

/// CEL: an absolute path without `.` or `..` segments and without control characters.
/// Doubled and trailing slashes are left alone: the kernel reads them as written.
pub const ABSOLUTE_PATH_RULE: &str = concat!(
    "self.startsWith('/') && !self.matches('",
    dot_segment_pattern!(),
    r"') && !self.matches('\\p{Cc}')"
);

/// CEL: no control characters (newlines, tabs, NUL, DEL and the C1 range).
pub const NO_CONTROL_CHARACTERS_RULE: &str = r"!self.matches('\\p{Cc}')";

/// CEL: printable ASCII without spaces, for identifiers that are written into other
/// programs' configuration or command lines as one word (images, serials, regions).
pub const PRINTABLE_WORD_RULE: &str = "self.matches('^[!-~]+$')";

/// CEL: if the URL names a port after its host, it is 1 to 65535. The format of the
/// rest is another rule's business, so a broken URL gets one message, not two.
pub const URL_PORT_RULE: &str = concat!(
    "!self.matches('^[a-z]+://[^/?#]*:[0-9]+([/?#].*)?$') || self.matches('^[a-z]+://[^/?#]*:",
    port_pattern!(),
    "([/?#].*)?$')"
);

/// CEL: a duration (guarded by the syntax rule, which reports bad syntax itself) that is
/// longer than zero.
pub const POSITIVE_DURATION_RULE: &str = concat!(
    "!self.matches('",
    "^(0|([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+)$",
    "') || duration(self) > duration('0s')"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_duration_rule_guards_with_the_duration_syntax() {
        assert!(POSITIVE_DURATION_RULE.contains(crate::duration::PATTERN));
    }

    #[test]
    fn rules_are_single_quoted_cel_strings() {
        // A stray single quote inside a pattern would end the CEL string early.
        for rule in [
            DNS_SUBDOMAIN_RULE,
            NODE_NAMES_RULE,
            ABSOLUTE_PATH_RULE,
            NO_CONTROL_CHARACTERS_RULE,
            PRINTABLE_WORD_RULE,
            URL_PORT_RULE,
            POSITIVE_DURATION_RULE,
        ] {
            assert_eq!(rule.matches('\'').count() % 2, 0, "{rule}");
        }
    }
}
