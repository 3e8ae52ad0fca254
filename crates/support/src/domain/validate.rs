//! Subjects and bodies, checked at the edge.

/// The longest body: 64 KiB of UTF-8.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest subject, in Unicode code points after trimming.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// The most CC users of a ticket, and so the most entries of each list of
/// CC users in a request (`cc_user_ids`, `add_user_ids`,
/// `remove_user_ids`).
pub const MAX_CC: usize = 20;
/// The most entries of each enum filter of a ticket list (`statuses`,
/// `priorities`, `categories`); repeats are collapsed.
pub const MAX_FILTER_VALUES: usize = 10;
/// The longest code word VerifyCaller passes on, in code points (identity
/// keeps at most 64 after normalising).
pub const MAX_CODE_WORD_CHARS: usize = 128;

/// The subject trimmed: 1–200 code points, one line (no control or bidi
/// formatting characters).
pub fn subject(raw: &str) -> Result<String, &'static str> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err("required");
    }
    if chars > MAX_SUBJECT_CHARS {
        return Err("at most 200 characters");
    }
    tenancy_runtime::text::one_line(trimmed)?;
    Ok(trimmed.to_owned())
}

/// A message body: 1 byte to 64 KiB, not only whitespace. Kept exactly as
/// written (plain text, never rendered).
pub fn body(raw: &str) -> Result<(), &'static str> {
    if raw.trim().is_empty() {
        return Err("required and not only whitespace");
    }
    if raw.len() > MAX_BODY_BYTES {
        return Err("at most 65536 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_trimmed_and_bounded() {
        assert_eq!(subject("  Disk full  ").as_deref(), Ok("Disk full"));
        assert!(subject("   ").is_err());
        assert!(subject(&"é".repeat(200)).is_ok());
        assert!(subject(&"é".repeat(201)).is_err());
        assert!(subject("bell\u{7}").is_err());
    }

    #[test]
    fn bodies_are_bounded_and_not_blank() {
        assert!(body("<script>alert(1)</script>").is_ok());
        assert!(body(" \n\t").is_err());
        assert!(body(&"a".repeat(MAX_BODY_BYTES)).is_ok());
        assert!(body(&"a".repeat(MAX_BODY_BYTES + 1)).is_err());
    }
}
