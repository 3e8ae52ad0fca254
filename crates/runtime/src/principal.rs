//! The verified caller, as the gateway forwards it to services.
//!
//! The gateway (and a service calling another service) encodes a
//! [`Principal`] as the protobuf `tenancy.auth.v1.Principal` in the
//! `x-tenancy-principal-bin` metadata entry and signs those bytes with
//! HMAC-SHA256 under a key shared by every server, in
//! `x-tenancy-principal-sig`. The principal carries its own expiry, so a
//! captured pair is useless after a few seconds. Services verify both and
//! refuse every non-PUBLIC call without a valid pair.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use prost::Message as _;
use sha2::Sha256;
use tenancy_proto::auth as pb;

use crate::clock::Timestamp;

pub use pb::{Role, TokenKind};

/// Metadata key of the encoded principal (binary metadata, base64 on the wire).
pub const PRINCIPAL_HEADER: &str = "x-tenancy-principal-bin";
/// Metadata key of the principal's HMAC-SHA256 signature (base64url).
pub const SIGNATURE_HEADER: &str = "x-tenancy-principal-sig";
/// Every metadata key with this prefix is ours: the gateway strips
/// client-supplied copies.
pub const RESERVED_PREFIX: &str = "x-tenancy-";
/// How long a signed principal stays valid: long enough for one hop and
/// clock skew between hosts, short enough that a captured one is useless.
pub const SIGNATURE_LIFETIME: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

/// Whether `role` is at least `min` in the order MANAGER < OWNER (no role is
/// below both).
pub fn role_at_least(role: Role, min: Role) -> bool {
    fn rank(role: Role) -> u8 {
        match role {
            Role::Unspecified => 0,
            Role::Manager => 1,
            Role::Owner => 2,
        }
    }
    rank(role) >= rank(min)
}

/// The verified caller of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// The authenticated user; `None` for anonymous PUBLIC calls.
    pub user_id: Option<String>,
    /// The account the token selects.
    pub account_id: Option<String>,
    /// The caller's live role in `account_id`.
    pub role: Role,
    /// The portal session, for portal tokens.
    pub session_id: Option<String>,
    /// The API token, for API-token calls.
    pub api_token_id: Option<String>,
    /// How the caller authenticated.
    pub token_kind: TokenKind,
    /// Authentication methods (RFC 8176), e.g. `pwd`, `otp`.
    pub amr: Vec<String>,
    /// The client address as the gateway determined it.
    pub client_ip: Option<IpAddr>,
    /// The request id shared by every hop of one client call.
    pub request_id: String,
    /// Whether the caller is on the provider's support team.
    pub staff: bool,
    /// When the session last proved its credentials (Unix seconds).
    pub auth_time: Option<i64>,
    /// The client's user agent.
    pub user_agent: String,
    /// Whether an API token is read-only.
    pub read_only: bool,
}

impl Principal {
    /// An anonymous caller (PUBLIC methods) from `client_ip`.
    pub fn anonymous(client_ip: Option<IpAddr>, request_id: impl Into<String>) -> Self {
        Self {
            client_ip,
            request_id: request_id.into(),
            ..Self::default()
        }
    }

    /// Another Tenancy service, calling an INTERNAL method on behalf of the
    /// request `request_id`.
    pub fn service(request_id: impl Into<String>) -> Self {
        Self {
            token_kind: TokenKind::Service,
            request_id: request_id.into(),
            ..Self::default()
        }
    }

    /// Whether this is a service-to-service call.
    pub fn is_service(&self) -> bool {
        self.token_kind == TokenKind::Service
    }

    fn to_proto(&self, expires_at: Timestamp) -> pb::Principal {
        pb::Principal {
            user_id: self.user_id.clone().unwrap_or_default(),
            account_id: self.account_id.clone().unwrap_or_default(),
            role: self.role as i32,
            session_id: self.session_id.clone().unwrap_or_default(),
            api_token_id: self.api_token_id.clone().unwrap_or_default(),
            token_kind: self.token_kind as i32,
            amr: self.amr.clone(),
            client_ip: self.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            request_id: self.request_id.clone(),
            staff: self.staff,
            auth_time: self.auth_time.unwrap_or_default(),
            expires_at_ms: expires_at.millis(),
            user_agent: self.user_agent.clone(),
            read_only: self.read_only,
        }
    }

    fn from_proto(p: pb::Principal) -> Self {
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        Self {
            user_id: non_empty(p.user_id),
            account_id: non_empty(p.account_id),
            role: Role::try_from(p.role).unwrap_or(Role::Unspecified),
            session_id: non_empty(p.session_id),
            api_token_id: non_empty(p.api_token_id),
            token_kind: TokenKind::try_from(p.token_kind).unwrap_or(TokenKind::Unspecified),
            amr: p.amr,
            client_ip: p.client_ip.parse().ok(),
            request_id: p.request_id,
            staff: p.staff,
            auth_time: (p.auth_time != 0).then_some(p.auth_time),
            user_agent: p.user_agent,
            read_only: p.read_only,
        }
    }
}

/// Why a forwarded principal was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrincipalError {
    /// No principal metadata at all.
    #[error("no signed principal")]
    Missing,
    /// Metadata present but not decodable.
    #[error("malformed principal metadata")]
    Malformed,
    /// The signature does not match: forged, or signed with another key.
    #[error("principal signature does not match")]
    BadSignature,
    /// Signed, but too old.
    #[error("signed principal expired")]
    Expired,
}

/// The key shared by the gateway and the services. Deliberately neither
/// `Debug` nor `PartialEq`: it must not reach a log or a variable-time
/// comparison.
#[derive(Clone)]
pub struct PrincipalKey {
    bytes: Vec<u8>,
    /// HMAC state with the key already absorbed: every call signs or
    /// verifies, and cloning this saves two SHA-256 blocks each time.
    keyed: HmacSha256,
}

impl PrincipalKey {
    /// The minimum key length: HMAC-SHA256 wants 32 bytes of entropy.
    pub const MIN_LEN: usize = 32;

    /// A key from raw bytes; `None` when shorter than [`Self::MIN_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        // HMAC accepts keys of any length; ≥ 32 is our rule.
        if bytes.len() < Self::MIN_LEN {
            return None;
        }
        let keyed = <HmacSha256 as Mac>::new_from_slice(bytes).ok()?;
        Some(Self {
            bytes: bytes.to_vec(),
            keyed,
        })
    }

    /// Parses the configured form: hex or base64 of at least 32 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
            .and_then(|bytes| Self::from_bytes(&bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = vec![0u8; Self::MIN_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(&bytes).unwrap_or_else(|| unreachable!("MIN_LEN bytes"))
    }

    /// The hex form, for writing a generated key to a file.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.bytes)
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// Signs `principal`, valid until `now + SIGNATURE_LIFETIME`, returning
    /// the two metadata values (principal in base64 without padding as gRPC
    /// binary metadata expects, signature in base64url).
    pub fn sign(&self, principal: &Principal, now: Timestamp) -> SignedPrincipal {
        let bytes = principal
            .to_proto(now.plus(SIGNATURE_LIFETIME))
            .encode_to_vec();
        let mut mac = self.mac();
        mac.update(&bytes);
        let signature = mac.finalize().into_bytes();
        SignedPrincipal {
            principal: STANDARD_NO_PAD.encode(&bytes),
            signature: URL_SAFE_NO_PAD.encode(signature),
        }
    }

    /// Verifies the two metadata values and returns the principal.
    pub fn verify(
        &self,
        principal: Option<&[u8]>,
        signature: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Principal, PrincipalError> {
        let (Some(principal), Some(signature)) = (principal, signature) else {
            return Err(if principal.is_none() && signature.is_none() {
                PrincipalError::Missing
            } else {
                PrincipalError::Malformed
            });
        };
        let bytes = decode_binary_metadata(principal).ok_or(PrincipalError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| PrincipalError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&bytes);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| PrincipalError::BadSignature)?;
        let decoded =
            pb::Principal::decode(bytes.as_slice()).map_err(|_| PrincipalError::Malformed)?;
        if decoded.expires_at_ms < now.millis() {
            return Err(PrincipalError::Expired);
        }
        Ok(Principal::from_proto(decoded))
    }
}

/// Binary metadata arrives base64-encoded, with or without padding.
fn decode_binary_metadata(value: &[u8]) -> Option<Vec<u8>> {
    let trimmed: Vec<u8> = value.iter().copied().filter(|b| *b != b'=').collect();
    STANDARD_NO_PAD.decode(trimmed).ok()
}

/// A signed principal, ready to be put into request metadata.
#[derive(Clone)]
pub struct SignedPrincipal {
    /// Value of [`PRINCIPAL_HEADER`].
    pub principal: String,
    /// Value of [`SIGNATURE_HEADER`].
    pub signature: String,
}

impl SignedPrincipal {
    /// Writes both entries into a tonic request's metadata, replacing any
    /// present (service-to-service clients, test callers).
    pub fn insert_into_metadata(&self, metadata: &mut tonic::metadata::MetadataMap) {
        if let (Ok(bytes), Ok(signature)) = (
            STANDARD_NO_PAD.decode(&self.principal),
            self.signature.parse(),
        ) {
            let mut principal = tonic::metadata::MetadataValue::from_bytes(&bytes);
            let mut signature: tonic::metadata::AsciiMetadataValue = signature;
            principal.set_sensitive(true);
            signature.set_sensitive(true);
            metadata.insert_bin(PRINCIPAL_HEADER, principal);
            metadata.insert(SIGNATURE_HEADER, signature);
        }
    }

    /// Writes both entries into HTTP headers, replacing any present.
    ///
    /// Both are marked sensitive: HPACK then sends them as never-indexed
    /// literals. They differ on every call, so indexing them would only
    /// churn both ends' header tables (a measurable share of the gateway's
    /// CPU), and a signature has no business in a shared table anyway.
    pub fn insert_into(&self, headers: &mut http::HeaderMap) {
        if let (Ok(mut p), Ok(mut s)) = (
            http::HeaderValue::from_str(&self.principal),
            http::HeaderValue::from_str(&self.signature),
        ) {
            p.set_sensitive(true);
            s.set_sensitive(true);
            headers.insert(PRINCIPAL_HEADER, p);
            headers.insert(SIGNATURE_HEADER, s);
        }
    }
}

/// Removes every `x-tenancy-*` entry: the gateway calls this on every client
/// request before adding its own.
pub fn strip_reserved(headers: &mut http::HeaderMap) {
    let reserved: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(RESERVED_PREFIX))
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
}

/// A tonic interceptor for service-to-service clients: signs a SERVICE
/// principal on every outgoing call.
#[derive(Clone)]
pub struct ServiceAuth {
    key: PrincipalKey,
    clock: crate::clock::SharedClock,
}

impl ServiceAuth {
    /// An interceptor signing with `key`.
    pub fn new(key: PrincipalKey, clock: crate::clock::SharedClock) -> Self {
        Self { key, clock }
    }
}

impl tonic::service::Interceptor for ServiceAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let request_id = tracing_request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.key
            .sign(&Principal::service(request_id), self.clock.now())
            .insert_into_metadata(request.metadata_mut());
        Ok(request)
    }
}

tokio::task_local! {
    /// The request id of the call being served, so outgoing calls carry it.
    pub static REQUEST_ID: String;
}

fn tracing_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Principal {
        Principal {
            user_id: Some("u1".into()),
            account_id: Some("a1".into()),
            role: Role::Owner,
            session_id: Some("s1".into()),
            token_kind: TokenKind::Portal,
            amr: vec!["pwd".into(), "otp".into()],
            client_ip: Some("2001:db8::1".parse().unwrap()),
            request_id: "r1".into(),
            auth_time: Some(1_700_000_000),
            user_agent: "grpcurl/1.8".into(),
            ..Principal::default()
        }
    }

    fn verify(
        key: &PrincipalKey,
        signed: &SignedPrincipal,
        now: Timestamp,
    ) -> Result<Principal, PrincipalError> {
        key.verify(
            Some(signed.principal.as_bytes()),
            Some(signed.signature.as_bytes()),
            now,
        )
    }

    #[test]
    fn a_signed_principal_verifies_and_round_trips() {
        let key = PrincipalKey::generate();
        let now = Timestamp(1_000_000);
        let signed = key.sign(&sample(), now);
        assert_eq!(verify(&key, &signed, now), Ok(sample()));
    }

    #[test]
    fn another_key_is_refused() {
        let signed = PrincipalKey::generate().sign(&sample(), Timestamp(0));
        assert_eq!(
            verify(&PrincipalKey::generate(), &signed, Timestamp(0)),
            Err(PrincipalError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_principal_is_refused() {
        let key = PrincipalKey::generate();
        let signed = key.sign(&sample(), Timestamp(0));
        let mut owner = sample();
        owner.user_id = Some("someone-else".into());
        let forged = SignedPrincipal {
            principal: key.sign(&owner, Timestamp(0)).principal,
            signature: signed.signature,
        };
        assert_eq!(
            verify(&key, &forged, Timestamp(0)),
            Err(PrincipalError::BadSignature)
        );
    }

    #[test]
    fn an_expired_principal_is_refused() {
        let key = PrincipalKey::generate();
        let signed = key.sign(&sample(), Timestamp(0));
        let later = Timestamp(0).plus(SIGNATURE_LIFETIME + Duration::from_millis(1));
        assert_eq!(verify(&key, &signed, later), Err(PrincipalError::Expired));
    }

    #[test]
    fn missing_and_garbled_metadata_are_refused() {
        let key = PrincipalKey::generate();
        assert_eq!(
            key.verify(None, None, Timestamp(0)),
            Err(PrincipalError::Missing)
        );
        assert_eq!(
            key.verify(Some(b"!!!"), Some(b"x"), Timestamp(0)),
            Err(PrincipalError::Malformed)
        );
        assert_eq!(
            key.verify(Some(b"AAAA"), None, Timestamp(0)),
            Err(PrincipalError::Malformed)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(PrincipalKey::parse("00ff").is_none());
        assert!(PrincipalKey::parse(&"ab".repeat(32)).is_some());
    }

    #[test]
    fn reserved_headers_are_stripped() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-tenancy-principal-bin", "AAAA".parse().unwrap());
        headers.insert("x-tenancy-anything", "1".parse().unwrap());
        headers.insert("authorization", "Bearer x".parse().unwrap());
        strip_reserved(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("authorization"));
    }
}
