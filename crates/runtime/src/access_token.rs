//! What marks a JWT as a portal access token, shared by identity (which
//! signs them) and the gateway (which accepts nothing else).
//!
//! Identity's signing keys sign access tokens only today; the type is
//! still stated twice, so that a JWT of any other type signed with the same
//! keys later (an ID token, a signed link) can never be taken for one:
//! - the `typ` header is [`TYP`] (`at+jwt`, RFC 9068 §2.1). Tokens issued
//!   before it was set carry jsonwebtoken's default, [`LEGACY_TYP`]
//!   (`JWT`), which the gateway still accepts with the right `kind` claim;
//!   they are gone one access-token lifetime after identity is upgraded,
//!   and so is the reason to accept `JWT`;
//! - the `kind` claim is [`KIND`] (`portal`); every access token identity
//!   has ever issued carries it, and a JWT without it is refused.

/// The `typ` header of an access token (RFC 9068).
pub const TYP: &str = "at+jwt";
/// The `typ` header of access tokens issued before [`TYP`].
pub const LEGACY_TYP: &str = "JWT";
/// The `kind` claim of a portal access token.
pub const KIND: &str = "portal";
