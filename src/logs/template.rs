//! Message templates: the message with its variable parts masked, so that `Fetched order 17 in
//! 12 ms` and `Fetched order 9031 in 250 ms` count as one kind of line.
//!
//! Masked, in this order: quoted strings (`"…"`, `'…'` → `"<*>"`), UUIDs (`<uuid>`), hex of eight
//! digits or more, or `0x…` (`<hex>`), numbers (`<n>`), and any other word holding a digit,
//! such as `exec-3` or `a1b2` (`<id>`). Words are runs of letters (any non-ASCII character
//! counts as one), digits, `-`, `_` and `.`, so
//! class names such as `java.lang.IllegalStateException` stay whole. This is a deliberately
//! simple, predictable rule, not a learned log parser (Drain and kin): a reader can tell from the
//! template alone why two lines were grouped.

/// The template of a message. Messages longer than 4 KiB are templated on their first 4 KiB,
/// which keeps the cost of a huge line bounded.
pub fn template_of(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4096));
    push_template(message, &mut out);
    out
}

/// Appends the template of `message` to `out`: the allocation-free form of [`template_of`], for
/// the hot loop that groups every line of a window. Works on bytes: every split point is an
/// ASCII byte, so slices stay on character boundaries.
pub fn push_template(message: &str, out: &mut String) {
    let message = truncate_at_char_boundary(message, 4096);
    let bytes = message.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'"' || b == b'\'' {
            // A quoted string masks whole when it closes; an apostrophe in prose (`can't`) does not.
            if let Some(length) = bytes[at + 1..].iter().position(|&c| c == b) {
                out.push(b as char);
                out.push_str("<*>");
                out.push(b as char);
                at += length + 2;
                continue;
            }
        }
        if is_word_byte(b) {
            let end = bytes[at..].iter().position(|&c| !is_word_byte(c)).map_or(bytes.len(), |n| at + n);
            let word = &message[at..end];
            // A trailing dot ends a sentence; it is not part of the word.
            let word_core = word.trim_end_matches('.');
            out.push_str(mask_word(word_core).unwrap_or(word_core));
            out.push_str(&word[word_core.len()..]);
            at = end;
            continue;
        }
        // Punctuation and spaces up to the next word or quote, copied as they are.
        let end = bytes[at..]
            .iter()
            .position(|&c| is_word_byte(c) || c == b'"' || c == b'\'')
            .map_or(bytes.len(), |n| at + n)
            .max(at + 1);
        out.push_str(&message[at..end]);
        at = end;
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Letters, digits, `-`, `_`, `.`; every non-ASCII byte counts as a letter (UTF-8 sequences
/// are never split, and non-ASCII words are kept whole).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b >= 0x80
}

fn mask_word(word: &str) -> Option<&'static str> {
    if !word.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if is_uuid(word) {
        return Some("<uuid>");
    }
    let hex_digits = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X"));
    if hex_digits.is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        || (word.len() >= 8
            && word.bytes().all(|b| b.is_ascii_hexdigit())
            && word.bytes().any(|b| b.is_ascii_alphabetic()))
    {
        return Some("<hex>");
    }
    let numeric = word.strip_prefix('-').unwrap_or(word);
    if numeric.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b',') {
        return Some("<n>");
    }
    Some("<id>")
}

fn is_uuid(word: &str) -> bool {
    let groups: Vec<&str> = word.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn numbers_ids_hex_uuids_and_quotes_are_masked() {
        let cases = [
            ("Fetched order 17 for customer 4242 in 12 ms", "Fetched order <n> for customer <n> in <n> ms"),
            ("total 12.50 EUR.", "total <n> EUR."),
            ("trace 4bf92f3577b34da6a3ce929d0e0e4736 done", "trace <hex> done"),
            ("at 0x7ffd12 on exec-3", "at <hex> on <id>"),
            ("id 123e4567-e89b-12d3-a456-426614174000 gone", "id <uuid> gone"),
            (r#"Resolved [404 NOT_FOUND "Order 12 not found"]"#, r#"Resolved [<n> NOT_FOUND "<*>"]"#),
            ("user 'bob' can't log in", "user '<*>' can't log in"),
            ("java.lang.IllegalStateException: boom", "java.lang.IllegalStateException: boom"),
            ("delta=41s250ms).", "delta=<id>)."),
        ];
        for (message, expected) in cases {
            assert_eq!(template_of(message), expected, "{message}");
        }
    }

    #[test]
    fn lines_of_one_kind_share_a_template_and_others_do_not() {
        assert_eq!(
            template_of("Published 3 outbox events in 12 ms"),
            template_of("Published 39 outbox events in 7 ms")
        );
        assert_ne!(
            template_of("Published 3 outbox events in 12 ms"),
            template_of("Refreshed 3 cache entries in 12 ms")
        );
    }

    proptest! {
        #[test]
        fn templating_never_panics_and_is_idempotent_on_its_own_output(message in "\\PC{0,200}") {
            let template = template_of(&message);
            prop_assert_eq!(template_of(&template), template.clone());
        }
    }
}
