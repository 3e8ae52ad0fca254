//! The parsers of attacker input in `domain/`, reachable from the fuzz
//! targets in `fuzz/` (feature `fuzzing`; never enabled in a build that
//! ships). Each function calls the domain function as the service does
//! and returns what the edge would answer, as a [`tenancy_runtime::Error`]
//! for refusals, so a target can check that no client mistake is INTERNAL.

use tenancy_runtime::Error;

use crate::domain::{credentials, password, profile, ssh, totp};

/// Whether `token` has the API-token shape and checksum
/// (`IntrospectApiToken`'s first check).
pub fn api_token_well_formed(token: &str) -> bool {
    credentials::api_token_well_formed(token)
}

/// An SSH public-key line as `AddSshKey` checks it: the normalised line and
/// its SHA-256 fingerprint.
pub fn parse_ssh_public_key(raw: &str) -> Result<(String, String), Error> {
    ssh::parse_ssh_public_key(raw)
        .map(|key| (key.line, key.fingerprint))
        .map_err(Error::from)
}

/// An email address as sign-up, login and password reset parse it; the
/// normalised address.
pub fn parse_email(raw: &str) -> Result<String, Error> {
    profile::parse_email("email", raw)
        .map(|email| email.address)
        .map_err(Error::from)
}

/// A display name (`min` code points at least).
pub fn parse_name(raw: &str, min: usize) -> Result<String, Error> {
    profile::parse_name("name", raw, min).map_err(Error::from)
}

/// A label of an API token or SSH key.
pub fn parse_label(raw: &str) -> Result<String, Error> {
    profile::parse_label("name", raw).map_err(Error::from)
}

/// A new password (sign-up, reset, change) for an account whose email's
/// local part is `email_local`; its NFC form.
pub fn check_new_password(raw: &str, email_local: Option<&str>) -> Result<String, Error> {
    password::check_new_password("password", raw, 12, email_local).map_err(Error::from)
}

/// A code word as `SetCodeWord` normalises it.
pub fn normalise_code_word(raw: &str) -> Option<String> {
    credentials::normalise_code_word(raw)
}

/// The TOTP code for `secret` at Unix time `seconds`.
pub fn totp_code_at(secret: &[u8], seconds: u64) -> String {
    totp::code_at(secret, seconds)
}

/// The time step a presented TOTP `code` matches at Unix time `seconds`.
pub fn totp_matching_step(secret: &[u8], code: &str, seconds: u64) -> Option<i64> {
    totp::matching_step(secret, code, seconds)
}
