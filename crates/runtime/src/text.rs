//! The one rule for text people type into one-line fields (display names,
//! account and contact names, ticket subjects) and for email addresses,
//! shared by every service so a value refused by one is refused by all.
//!
//! Each function answers with a description of what is wrong, which the
//! caller turns into a field violation of its own error type; lengths and
//! normalisation stay with each field.

/// Bidirectional formatting characters: embeddings and overrides
/// (U+202A–U+202E), isolates (U+2066–U+2069), the implicit marks
/// (U+200E, U+200F, U+061C). Shown to someone else, they reorder what is
/// displayed (e.g. a name that renders as "Support Team" but is not).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Checks a one-line text: no control characters (C0, DEL, C1, so no line
/// breaks or tabs), no line or paragraph separators (U+2028, U+2029), no
/// bidirectional formatting characters ([`is_bidi_control`]).
pub fn one_line(value: &str) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    if value.chars().any(|c| matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err("must be one line");
    }
    if value.chars().any(is_bidi_control) {
        return Err(
            "must not contain bidirectional formatting characters (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C)",
        );
    }
    Ok(())
}

/// The longest address accepted, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Characters a local part may hold besides letters and digits (RFC 5322
/// `atext`); a dot only between others.
const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";

/// Checks an email address (already trimmed) against the one syntax every
/// service accepts, a strict subset of RFC 5322 `addr-spec`:
/// - `local@domain`, at most 254 bytes;
/// - the local part a dot-atom of 1–64 bytes (letters, digits and
///   ``!#$%&'*+-/=?^_`{|}~``; dots only between them): quoted local parts
///   are refused;
/// - the domain a host name with at least two labels, each 1–63
///   characters of letters, digits and inner hyphens, the last not only
///   digits: IP literals (`a@[127.0.0.1]`) and bare addresses
///   (`a@127.0.0.1`) are refused, as are single-label domains
///   (`a@localhost`).
///
/// Letters include non-ASCII ones (internationalised addresses).
pub fn email(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("required");
    }
    if value.len() > MAX_EMAIL_BYTES {
        return Err("at most 254 bytes");
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err("not an email address");
    };
    if domain.starts_with('[') {
        return Err("IP-literal domains are not accepted");
    }
    if local.starts_with('"') {
        return Err("quoted local parts are not accepted");
    }
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || LOCAL_SPECIALS.contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().count() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if !local_ok || !domain_ok {
        return Err("not an email address");
    }
    Ok(())
}

/// A phone number in E.164 (ITU-T): `+`, a country code not starting
/// with 0, 8 to 15 digits in all. Spaces, dashes, dots and parentheses
/// people type between digits are dropped; anything else is refused.
/// Returns the number as stored (`+` and digits).
pub fn phone(input: &str) -> Result<String, &'static str> {
    const RULE: &str = "E.164: \"+\", a country code (not starting with 0), 8 to 15 digits in all";
    let rest = input.trim().strip_prefix('+').ok_or(RULE)?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(RULE),
        }
        if digits.len() > 15 {
            return Err(RULE);
        }
    }
    if digits.len() < 8 || digits.starts_with('0') {
        return Err(RULE);
    }
    Ok(format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_text_refuses_controls_and_bidi_formatting() {
        for good in [
            "Ada Lovelace",
            "Zoë Ünal",
            "شركة",
            "日本語",
            "a–b",
            "O'Brien",
        ] {
            assert_eq!(one_line(good), Ok(()), "{good:?}");
        }
        for bad in [
            "a\u{202E}gnp.exe",
            "a\u{202A}b",
            "a\u{202B}b",
            "a\u{202C}b",
            "a\u{202D}b",
            "a\u{2066}b",
            "a\u{2067}b",
            "a\u{2068}b",
            "a\u{2069}b",
            "a\u{200E}b",
            "a\u{200F}b",
            "a\u{061C}b",
            "a\nb",
            "a\tb",
            "a\u{7}b",
            "a\u{7F}b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2029}b",
        ] {
            assert!(one_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_follow_one_syntax() {
        for good in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "x@xn--bcher-kva.example",
            "jörg@bücher.de",
        ] {
            assert_eq!(email(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@b",
            "a@localhost",
            "a@.com",
            "a@example.com.",
            "a@-example.com",
            "a@example..com",
            "a b@example.com",
            "a@@example.com",
            "<a@example.com>",
            "a@[127.0.0.1]",
            "a@[IPv6:::1]",
            "a@127.0.0.1",
            "\"a b\"@example.com",
            "\"a\"@example.com",
            ".a@example.com",
            "a.@example.com",
            "a..b@example.com",
            "a,b@example.com",
            "a\u{202E}@example.com",
            "a@exa\u{202E}mple.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(email(&format!("a@{}.com", "b".repeat(64))).is_err());
        assert!(email(&format!("a@{}.com", "b.".repeat(130))).is_err());
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert_eq!(phone(" +358 40 123-4567 ").unwrap(), "+358401234567");
        assert_eq!(phone("+1 (415) 555.0100").unwrap(), "+14155550100");
        for bad in [
            "358401234567",
            "+0358401234",
            "+1234567",
            "+1234567890123456",
            "+35840x123456",
            "+358\u{202e}401234567",
            "",
        ] {
            assert!(phone(bad).is_err(), "{bad:?}");
        }
    }
}
