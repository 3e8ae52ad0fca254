//! Email addresses and display names.

use super::error::{IdentityError, Invalid};

/// The longest email address accepted, in bytes.
pub(crate) const MAX_EMAIL_BYTES: usize = 254;

/// A normalised email: trimmed, domain lower-cased. `key` is the
/// case-insensitive uniqueness key (all lower-case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Email {
    pub(crate) address: String,
    pub(crate) key: String,
    pub(crate) local: String,
}

fn email_error(field: &str, why: &str) -> IdentityError {
    IdentityError::invalid(Invalid::Email, field, why)
}

/// Parses and normalises an email address (the syntax of
/// [`tenancy_runtime::text::email`]).
pub(crate) fn parse_email(field: &str, raw: &str) -> Result<Email, IdentityError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(email_error(field, "required"));
    }
    if trimmed.len() > MAX_EMAIL_BYTES {
        return Err(email_error(field, "at most 254 bytes"));
    }
    tenancy_runtime::text::email(trimmed).map_err(|why| email_error(field, why))?;
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return Err(email_error(field, "not an email address"));
    };
    let domain = domain.to_lowercase();
    let address = format!("{local}@{domain}");
    Ok(Email {
        key: address.to_lowercase(),
        local: local.to_lowercase(),
        address,
    })
}

/// Validates a display name: trimmed, `min`–200 code points, one line
/// ([`tenancy_runtime::text::one_line`]: no control or bidi formatting
/// characters).
pub(crate) fn parse_name(field: &str, raw: &str, min: usize) -> Result<String, IdentityError> {
    let name = raw.trim();
    let count = name.chars().count();
    if count < min || count > 200 {
        return Err(IdentityError::invalid(
            Invalid::Name,
            field,
            format!("must be {min}–200 characters"),
        ));
    }
    tenancy_runtime::text::one_line(name)
        .map_err(|why| IdentityError::invalid(Invalid::Name, field, why))?;
    Ok(name.to_owned())
}

/// A label (API token, SSH key): 1–100 code points after trimming.
pub(crate) fn parse_label(field: &str, raw: &str) -> Result<String, IdentityError> {
    let name = raw.trim();
    let count = name.chars().count();
    if !(1..=100).contains(&count) || tenancy_runtime::text::one_line(name).is_err() {
        return Err(IdentityError::invalid(
            Invalid::Name,
            field,
            "must be 1–100 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Truncates a user agent to 512 bytes at a character boundary.
pub(crate) fn truncate_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(512);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}

/// A short device description from a user agent, e.g. "Firefox on Linux".
pub(crate) fn device(ua: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("grpcurl", "grpcurl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Windows", "Windows"),
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => o.to_owned(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_runtime::{Error, Reason};

    #[test]
    fn emails_are_trimmed_and_domains_lower_cased() {
        let e = parse_email("email", "  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.address, "Alice.Smith@example.com");
        assert_eq!(e.key, "alice.smith@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "alice@localhost",
            "alice@exa_mple.com",
            "a..b@example.com",
        ] {
            let e = parse_email("email", bad).map_err(Error::from).unwrap_err();
            assert_eq!(e.reason, Reason::EmailInvalid, "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(parse_email("email", &long).is_err());
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(parse_name("name", " Bob ", 1).unwrap(), "Bob");
        assert!(parse_name("name", "  ", 1).is_err());
        assert!(parse_name("name", "", 0).is_ok());
        assert!(parse_name("name", &"x".repeat(201), 1).is_err());
    }

    #[test]
    fn devices_are_derived_from_user_agents() {
        assert_eq!(
            device("Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"),
            "Firefox on Linux"
        );
        assert_eq!(device("something"), "");
    }
}
