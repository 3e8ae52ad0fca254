//! Identifiers and opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;
use crate::error::Reason;

/// A new resource id: a UUIDv7 (time-ordered, so B-tree inserts stay local),
/// lower-case hyphenated.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Parses a client-supplied id, naming `field` when it is not a UUID.
/// Returned in canonical lower-case form.
pub fn parse_id(field: &str, value: &str) -> Result<String, Error> {
    uuid::Uuid::parse_str(value.trim())
        .map(|u| u.to_string())
        .map_err(|_| Error::invalid_field(field, "must be a UUID"))
}

/// Declares typed ids: a newtype over a canonical lower-case UUID string
/// per kind of resource, so `revoke(user_id, account_id)` cannot be called
/// with the two swapped. Parsed once at the edge ([`UserId::parse`] names
/// the request field when the value is not a UUID); inside, a value that
/// exists is an id of its kind. Stored and bound as text (sea-orm's
/// `DeriveValueType`), serialized as the bare string.
#[macro_export]
macro_rules! typed_ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sea_orm::DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new id (UUIDv7: time-ordered).
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self($crate::ids::new_id())
            }

            /// A client-supplied id, naming `field` when it is not a UUID.
            pub fn parse(field: &str, value: &str) -> Result<Self, $crate::Error> {
                $crate::ids::parse_id(field, value).map(Self)
            }

            /// An id this system issued and kept (a column, a peer's answer,
            /// a verified principal): not parsed again.
            pub fn trusted(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string (for proto messages).
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for sea_orm::Value {
            fn from(id: &$name) -> sea_orm::Value {
                id.0.clone().into()
            }
        }
    )+};
}

typed_ids! {
    /// A person's or an API member's user id (identity).
    UserId;
    /// An account (a legal entity, the tenant).
    AccountId;
    /// A login session.
    SessionId;
    /// A Public API token.
    ApiTokenId;
    /// An SSH public key of a user.
    SshKeyId;
    /// An invitation to join an account.
    InvitationId;
    /// A contact (person or role address) of an account.
    ContactId;
    /// A support ticket.
    TicketId;
    /// A message on a support ticket.
    MessageId;
    /// A service (server, storage, …) in an account's catalogue.
    ServiceId;
}

/// The default and maximum page sizes of every List method.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 500;

/// A client's `page_size`: 0 means the default, larger than the maximum is
/// capped, negative is refused.
pub fn page_size(requested: i32) -> Result<u64, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid_field("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(u64::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE)),
    }
}

/// Encodes a keyset cursor as an opaque page token (AIP-158). The cursor
/// also records the query it belongs to (`filter`), so a token is refused
/// with another filter instead of silently skipping rows.
pub fn encode_page_token<C: Serialize>(cursor: &C) -> String {
    serde_json::to_vec(cursor)
        .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
        .unwrap_or_default()
}

/// Decodes a page token; empty means the first page.
pub fn decode_page_token<C: DeserializeOwned>(token: &str) -> Result<Option<C>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            Error::new(
                Reason::PageTokenInvalid,
                "page_token is not a token this list returned",
            )
            .with_field("page_token", "not a token this list returned")
        })
}

/// Decodes a page token and checks it was issued for this list (the same
/// owner, filters and order, as `issued_here` tells from the cursor): a
/// token of another list is refused like a garbled one, never honoured.
pub fn decode_page_token_for<C: DeserializeOwned>(
    token: &str,
    issued_here: impl FnOnce(&C) -> bool,
) -> Result<Option<C>, Error> {
    match decode_page_token::<C>(token)? {
        Some(cursor) if !issued_here(&cursor) => Err(Error::new(
            Reason::PageTokenInvalid,
            "page_token was issued for another list or other filters",
        )
        .with_field(
            "page_token",
            "only valid with the list and filters it came from",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_of_another_list_is_refused() {
        let token = encode_page_token(&("list-a", 7));
        let ours = decode_page_token_for::<(String, i32)>(&token, |c| c.0 == "list-a").unwrap();
        assert_eq!(ours, Some(("list-a".to_owned(), 7)));
        let error =
            decode_page_token_for::<(String, i32)>(&token, |c| c.0 == "list-b").unwrap_err();
        assert_eq!(error.reason, Reason::PageTokenInvalid);
        assert_eq!(
            decode_page_token_for::<(String, i32)>("", |_| false).unwrap(),
            None
        );
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = encode_page_token(&("2024-01-01", 42));
        assert_eq!(
            decode_page_token::<(String, i32)>(&token).unwrap(),
            Some(("2024-01-01".into(), 42))
        );
        assert_eq!(decode_page_token::<(String, i32)>("").unwrap(), None);
        let error = decode_page_token::<(String, i32)>("!!garbage").unwrap_err();
        assert_eq!(error.reason, Reason::PageTokenInvalid);
    }

    #[test]
    fn page_sizes_default_cap_and_refuse_negatives() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10_000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn typed_ids_parse_once_and_name_the_field() {
        let id = UserId::new();
        let parsed = UserId::parse("user_id", &id.as_str().to_uppercase()).unwrap();
        assert_eq!(parsed, id);
        let error = AccountId::parse("account_id", "nope").unwrap_err();
        assert_eq!(error.reason, Reason::FieldInvalid);
        assert_eq!(error.violations[0].field, "account_id");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{id}\""),
            "serialized as the bare string"
        );
    }

    #[test]
    fn ids_are_uuids() {
        let id = new_id();
        assert_eq!(parse_id("id", &id.to_uppercase()).unwrap(), id);
        assert!(parse_id("id", "nope").is_err());
    }
}
