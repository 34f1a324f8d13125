//! Escaping what our pages and messages carry (`/logs` and `/incidents` pages, Slack links): a
//! value from a label, a request or a log line is percent-encoded whole in a link, so it can never
//! add a parameter or a path segment, and HTML-escaped in a page, so it can never add markup.

use std::fmt::Write as _;

/// Percent-encodes a query-string value: everything but RFC 3986's unreserved characters.
pub fn encode_query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `key=value&…` with every key and value encoded, in the iterator's order.
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(key, value)| format!("{}={}", encode_query_value(key), encode_query_value(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (an ANSI escape in a log line) are shown, not interpreted.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_add_parameters() {
        assert_eq!(encode_query_value("check out&x=1/é"), "check%20out%26x%3D1%2F%C3%A9");
        assert_eq!(encode_query_value("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(encode_query([("service", "a&b"), ("offset", "100")]), "service=a%26b&offset=100");
    }
}
