//! Text that holds a secret in clear (a server password or a phone code
//! put into a message at delivery): built in ONE allocation of its final
//! size and wiped when dropped ([`Zeroizing`]).
//!
//! One allocation matters: a string that grows while it is built
//! (`str::replace`, `format!`, `serde_json::to_string`) moves to a larger
//! buffer and gives the old one back to the allocator unwiped, with the
//! secret in it. Each function here sizes its buffer first (exactly, or by
//! the escape's worst case), so the secret is only ever in buffers that
//! are wiped.

use zeroize::Zeroizing;

/// `text` with every `pattern` replaced by `value`.
pub fn substitute(text: &str, pattern: &str, value: &str) -> Zeroizing<String> {
    let count = if pattern.is_empty() {
        0
    } else {
        text.matches(pattern).count()
    };
    let size = text.len() - count * pattern.len() + count * value.len();
    let mut out = Zeroizing::new(String::with_capacity(size));
    let mut rest = text;
    if count > 0 {
        while let Some(at) = rest.find(pattern) {
            out.push_str(&rest[..at]);
            out.push_str(value);
            rest = &rest[at + pattern.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// `text` escaped for HTML element content and attribute values.
pub fn escape_html(text: &str) -> Zeroizing<String> {
    // The longest escape (`&quot;`, `&#x27;`) is 6 bytes for 1.
    let mut out = Zeroizing::new(String::with_capacity(text.len() * 6));
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as the inside of a JSON string (without the quotes).
pub fn escape_json(text: &str) -> Zeroizing<String> {
    // The longest escape (`\u001f`) is 6 bytes for 1.
    let mut out = Zeroizing::new(String::with_capacity(text.len() * 6));
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[(u32::from(c) >> 4) as usize]));
                out.push(char::from(HEX[(u32::from(c) & 0xf) as usize]));
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a form body (every byte but ASCII letters
/// and digits).
pub fn escape_form(text: &str) -> Zeroizing<String> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Zeroizing::new(String::with_capacity(text.len() * 3));
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The result is in the buffer sized first: it never grew (a grown
    /// buffer would have left a copy behind).
    fn fits(s: &Zeroizing<String>, sized: usize) {
        assert!(s.len() <= sized);
        assert_eq!(s.capacity(), sized);
    }

    #[test]
    fn substitution_replaces_every_occurrence_in_an_exact_buffer() {
        let out = substitute("a {x} b {x}", "{x}", "sécret");
        assert_eq!(out.as_str(), "a sécret b sécret");
        assert_eq!(out.capacity(), out.len());
        assert_eq!(substitute("none here", "{x}", "v").as_str(), "none here");
        assert_eq!(substitute("{x}", "{x}", "").as_str(), "");
        assert_eq!(substitute("abc", "", "v").as_str(), "abc");
    }

    #[test]
    fn escapes_agree_with_the_libraries_and_never_grow() {
        for text in ["plain", "a \"quoted\"\nline\t\\ <b>&'</b> \u{1} ü €", ""] {
            let json = escape_json(text);
            let quoted = serde_json::to_string(text).unwrap();
            assert_eq!(json.as_str(), &quoted[1..quoted.len() - 1]);
            fits(&json, text.len() * 6);
            let form = escape_form(text);
            let expected =
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            assert_eq!(form.as_str(), expected);
            fits(&form, text.len() * 3);
            fits(&escape_html(text), text.len() * 6);
        }
        assert_eq!(
            escape_html("<a href=\"x\">&'</a>").as_str(),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;&lt;/a&gt;"
        );
    }
}
