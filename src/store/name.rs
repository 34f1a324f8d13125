//! Service names made safe for paths, reversibly.
//!
//! The rule: every byte of the UTF-8 name outside `[A-Za-z0-9_.-]` becomes `%XX` (two uppercase
//! hex digits), and so does a leading `.`; an empty name is `%`. So a directory name never holds
//! a separator, a control character, a `%` of the name itself, and is never `.`, `..` or hidden;
//! and [`decode_name`] gives the name back exactly. `checkout-api` stays `checkout-api`,
//! `team/a b` becomes `team%2Fa%20b`, `..` becomes `%2E.`.

/// The directory name of `name`.
pub fn encode_name(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut encoded = String::with_capacity(name.len());
    for (index, byte) in name.bytes().enumerate() {
        let plain = byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') || (byte == b'.' && index > 0);
        if plain {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The name a directory name encodes, or `None` when it is not an encoding [`encode_name`] makes
/// (a stray directory someone put there).
pub fn decode_name(encoded: &str) -> Option<String> {
    if encoded == "%" {
        return Some(String::new());
    }
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let hex = encoded.get(index + 1..index + 3)?;
            if hex.bytes().any(|b| b.is_ascii_lowercase()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    let name = String::from_utf8(decoded).ok()?;
    // Only the canonical encoding is accepted, so each directory maps to one name and back.
    (encode_name(&name) == encoded).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(encode_name("checkout-api"), "checkout-api");
        assert_eq!(encode_name("team/a b"), "team%2Fa%20b");
        assert_eq!(encode_name(".."), "%2E.");
        assert_eq!(encode_name("."), "%2E");
        assert_eq!(encode_name("a%b"), "a%25b");
        assert_eq!(encode_name("é"), "%C3%A9");
        assert_eq!(encode_name(""), "%");
        assert_eq!(decode_name("team%2Fa%20b").as_deref(), Some("team/a b"));
        assert_eq!(decode_name("%2f"), None, "lowercase hex is not canonical");
        assert_eq!(decode_name("a%2"), None);
        assert_eq!(decode_name("%41"), None, "'A' is never encoded");
    }

    proptest! {
        #[test]
        fn round_trips_and_is_path_safe(name in any::<String>()) {
            let encoded = encode_name(&name);
            prop_assert_eq!(decode_name(&encoded), Some(name));
            prop_assert!(!encoded.is_empty() && !encoded.starts_with('.'));
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-%".contains(&b)));
        }

        #[test]
        fn bytes_outside_the_set_round_trip(name in "[./\\\\ %\\x00-\\x1f]{0,12}") {
            prop_assert_eq!(decode_name(&encode_name(&name)), Some(name));
        }
    }
}
