//! The verified caller, as the gateway forwards it to services.
//!
//! The gateway encodes a [`Principal`] as the protobuf
//! `tenancy.auth.v1.Principal` in the `x-tenancy-principal-bin` metadata
//! entry and signs those bytes with HMAC-SHA256 under a key shared by the
//! gateway and the services, in `x-tenancy-principal-sig`. A signed
//! principal is good for one call: it names the method it was signed for,
//! carries a unique call id and expires after [`SIGNATURE_LIFETIME`].
//! Services verify all three ([`ReplayCache`] remembers the ids) and refuse
//! every forwarded call without a valid one.
//!
//! Service-to-service calls carry no principal: the caller is the one its
//! mutual-TLS certificate names (`crate::tls`).

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
/// How long a principal the gateway signs stays valid: long enough for one
/// hop and clock skew between hosts, short enough that the ids services
/// must remember stay few.
pub const SIGNATURE_LIFETIME: Duration = Duration::from_secs(15);
/// The longest lifetime a service accepts (`tenancy admin principal` signs
/// for this long, for a person to paste into grpcurl). Longer ones are
/// refused, which keeps the replay cache bounded.
pub const MAX_SIGNATURE_LIFETIME: Duration = Duration::from_secs(60);
/// Clock skew between hosts tolerated on top of [`MAX_SIGNATURE_LIFETIME`].
const CLOCK_SKEW: Duration = Duration::from_secs(5);

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
    /// For service-to-service calls: the calling service, as its
    /// certificate names it (never signed, never sent).
    pub caller: Option<crate::tls::Caller>,
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

    fn to_proto(&self, call: &Call<'_>, expires_at: Timestamp) -> pb::Principal {
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
            method: call.method.to_owned(),
            call_id: call.id.to_vec(),
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
            caller: None,
        }
    }
}

/// The one call a principal is signed for.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The full gRPC method, `/package.Service/Method`.
    pub method: &'a str,
    /// A unique id (see [`CallIds`]).
    pub id: [u8; 16],
}

/// A verified principal and the call it was signed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Who calls.
    pub principal: Principal,
    /// The method it was signed for.
    pub method: String,
    /// Its unique id.
    pub call_id: Vec<u8>,
    /// When it stops being valid (Unix milliseconds).
    pub expires_at_ms: i64,
}

/// Unique call ids without a random draw (a syscall) per call: a random
/// per-process prefix and a counter.
pub struct CallIds {
    prefix: [u8; 8],
    next: std::sync::atomic::AtomicU64,
}

impl Default for CallIds {
    fn default() -> Self {
        use rand::RngCore as _;
        let mut prefix = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        Self {
            prefix,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl CallIds {
    /// The next id: unique in this process, and across processes but for a
    /// 2^-64 chance per pair of processes.
    pub fn next(&self) -> [u8; 16] {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.prefix);
        id[8..].copy_from_slice(&n.to_be_bytes());
        id
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
    /// Signed for longer than any signer may.
    #[error("signed principal valid for too long")]
    TooLong,
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
    /// Other keys signatures are accepted with, never signed with: the
    /// next or the previous key during a rotation
    /// (`principal_keys_accepted`).
    accepted: Vec<HmacSha256>,
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
            accepted: Vec::new(),
        })
    }

    /// This key, verifying signatures made with any of `others` too (a
    /// rotation: services accept the next key before the gateway signs
    /// with it, and the previous one until every gateway stopped).
    #[must_use]
    pub fn also_accepting(mut self, others: impl IntoIterator<Item = PrincipalKey>) -> Self {
        self.accepted.extend(others.into_iter().map(|k| k.keyed));
        self
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

    /// Signs `principal` for `call`, valid until `now +
    /// SIGNATURE_LIFETIME`, returning the two metadata values (principal in
    /// base64 without padding as gRPC binary metadata expects, signature in
    /// base64url).
    pub fn sign(&self, principal: &Principal, call: Call<'_>, now: Timestamp) -> SignedPrincipal {
        self.sign_for(principal, call, now, SIGNATURE_LIFETIME)
    }

    /// [`Self::sign`] with another lifetime (at most
    /// [`MAX_SIGNATURE_LIFETIME`] is accepted).
    pub fn sign_for(
        &self,
        principal: &Principal,
        call: Call<'_>,
        now: Timestamp,
        lifetime: Duration,
    ) -> SignedPrincipal {
        let bytes = principal
            .to_proto(&call, now.plus(lifetime))
            .encode_to_vec();
        let mut mac = self.mac();
        mac.update(&bytes);
        let signature = mac.finalize().into_bytes();
        SignedPrincipal {
            principal: STANDARD_NO_PAD.encode(&bytes),
            signature: URL_SAFE_NO_PAD.encode(signature),
        }
    }

    /// Verifies the two metadata values and returns the principal and the
    /// call it was signed for (the caller checks the method and the id).
    pub fn verify(
        &self,
        principal: Option<&[u8]>,
        signature: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Verified, PrincipalError> {
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
        // `verify_slice` compares in constant time. The accepted keys are
        // tried only when the signing key fails (a rotation under way).
        let signed_with = |key: &HmacSha256| {
            let mut mac = key.clone();
            mac.update(&bytes);
            mac.verify_slice(&signature).is_ok()
        };
        if !signed_with(&self.keyed) && !self.accepted.iter().any(signed_with) {
            return Err(PrincipalError::BadSignature);
        }
        let mut decoded =
            pb::Principal::decode(bytes.as_slice()).map_err(|_| PrincipalError::Malformed)?;
        if decoded.expires_at_ms < now.millis() {
            return Err(PrincipalError::Expired);
        }
        if decoded.expires_at_ms > now.plus(MAX_SIGNATURE_LIFETIME + CLOCK_SKEW).millis() {
            return Err(PrincipalError::TooLong);
        }
        let method = std::mem::take(&mut decoded.method);
        let call_id = std::mem::take(&mut decoded.call_id);
        let expires_at_ms = decoded.expires_at_ms;
        Ok(Verified {
            principal: Principal::from_proto(decoded),
            method,
            call_id,
            expires_at_ms,
        })
    }
}

/// What [`ReplayCache::first_use`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Never seen: the call may proceed.
    First,
    /// Seen before, within its lifetime: a replay.
    Repeated,
    /// Too many ids alive to remember another: refuse (fail closed).
    Full,
}

/// The call ids of principals a service has accepted, each kept until the
/// principal expires, so a captured principal cannot be used twice. Bounded:
/// at most [`ReplayCache::CAPACITY`] ids, pruned of expired ones every
/// second; when full of live ids, calls are refused rather than a replay
/// let through.
pub struct ReplayCache {
    shards: Vec<parking_lot::Mutex<Shard>>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    expiries: std::collections::HashMap<[u8; 16], i64>,
    next_prune: i64,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl ReplayCache {
    /// Ids remembered at most: a replica answering 20,000 calls a second
    /// holds 300,000 for [`SIGNATURE_LIFETIME`].
    pub const CAPACITY: usize = 1_000_000;
    const SHARDS: usize = 16;

    /// A cache of at most `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shards: (0..Self::SHARDS)
                .map(|_| parking_lot::Mutex::new(Shard::default()))
                .collect(),
            per_shard: capacity.div_ceil(Self::SHARDS).max(1),
        }
    }

    /// Records `id` (valid until `expires_at_ms`) at `now_ms` and says
    /// whether this is its first use. Ids that are not 16 bytes are
    /// [`Use::Repeated`]: no signer makes them.
    pub fn first_use(&self, id: &[u8], expires_at_ms: i64, now_ms: i64) -> Use {
        let Ok(id) = <[u8; 16]>::try_from(id) else {
            return Use::Repeated;
        };
        // The counter half of gateway ids varies fastest.
        let shard = &self.shards[usize::from(id[15]) % Self::SHARDS];
        let mut shard = shard.lock();
        if now_ms >= shard.next_prune || shard.expiries.len() >= self.per_shard {
            shard.expiries.retain(|_, expires| *expires >= now_ms);
            shard.next_prune = now_ms + 1000;
        }
        if shard.expiries.contains_key(&id) {
            return Use::Repeated;
        }
        if shard.expiries.len() >= self.per_shard {
            return Use::Full;
        }
        shard.expiries.insert(id, expires_at_ms);
        Use::First
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

/// Metadata key of the request id shared by every hop of one client call.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A tonic interceptor for service-to-service clients: passes the request
/// id of the call being served on, so logs of every hop correlate. The
/// caller itself is authenticated by its mutual-TLS certificate.
#[derive(Clone, Default)]
pub struct ServiceAuth;

impl ServiceAuth {
    /// The interceptor.
    pub fn new() -> Self {
        Self
    }
}

impl tonic::service::Interceptor for ServiceAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(id) = tracing_request_id().and_then(|id| id.parse().ok()) {
            request.metadata_mut().insert(REQUEST_ID_HEADER, id);
        }
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

    const CALL: Call<'static> = Call {
        method: "/tenancy.identity.v1.IdentityService/GetMe",
        id: [7; 16],
    };

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
        .map(|v| v.principal)
    }

    #[test]
    fn a_signed_principal_verifies_and_round_trips() {
        let key = PrincipalKey::generate();
        let now = Timestamp(1_000_000);
        let signed = key.sign(&sample(), CALL, now);
        assert_eq!(verify(&key, &signed, now), Ok(sample()));
        let verified = key
            .verify(
                Some(signed.principal.as_bytes()),
                Some(signed.signature.as_bytes()),
                now,
            )
            .unwrap();
        assert_eq!(verified.method, CALL.method);
        assert_eq!(verified.call_id, CALL.id);
    }

    #[test]
    fn accepted_keys_verify_but_never_sign() {
        let current = PrincipalKey::generate();
        let next = PrincipalKey::generate();
        let rotating = current.clone().also_accepting([next.clone()]);
        let now = Timestamp(1_000_000);
        assert!(verify(&rotating, &current.sign(&sample(), CALL, now), now).is_ok());
        assert!(verify(&rotating, &next.sign(&sample(), CALL, now), now).is_ok());
        let stranger = PrincipalKey::generate().sign(&sample(), CALL, now);
        assert_eq!(
            verify(&rotating, &stranger, now),
            Err(PrincipalError::BadSignature)
        );
        // It signs with the current key: a service not accepting the next
        // one yet still verifies it.
        let signed = rotating.sign(&sample(), CALL, now);
        assert!(verify(&current, &signed, now).is_ok());
        assert!(verify(&next, &signed, now).is_err());
    }

    #[test]
    fn a_principal_signed_for_too_long_is_refused() {
        let key = PrincipalKey::generate();
        let now = Timestamp(1_000_000);
        let ok = key.sign_for(&sample(), CALL, now, MAX_SIGNATURE_LIFETIME);
        assert!(verify(&key, &ok, now).is_ok());
        let long = key.sign_for(&sample(), CALL, now, MAX_SIGNATURE_LIFETIME * 2);
        assert_eq!(verify(&key, &long, now), Err(PrincipalError::TooLong));
    }

    #[test]
    fn the_replay_cache_refuses_a_second_use_until_expiry_and_fails_closed_when_full() {
        let cache = ReplayCache::with_capacity(16);
        assert_eq!(cache.first_use(&[1; 16], 2_000, 1_000), Use::First);
        assert_eq!(cache.first_use(&[1; 16], 2_000, 1_500), Use::Repeated);
        assert_eq!(cache.first_use(&[1; 3], 2_000, 1_500), Use::Repeated);
        // Shard of id[15] == 1 holds one id: another live one does not fit.
        let mut other = [2; 16];
        other[15] = 1;
        assert_eq!(cache.first_use(&other, 2_000, 1_600), Use::Full);
        // Once the first expired it is forgotten and room is made.
        assert_eq!(cache.first_use(&other, 9_000, 2_001), Use::First);
        let ids = CallIds::default();
        assert_ne!(ids.next(), ids.next());
    }

    #[test]
    fn another_key_is_refused() {
        let signed = PrincipalKey::generate().sign(&sample(), CALL, Timestamp(0));
        assert_eq!(
            verify(&PrincipalKey::generate(), &signed, Timestamp(0)),
            Err(PrincipalError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_principal_is_refused() {
        let key = PrincipalKey::generate();
        let signed = key.sign(&sample(), CALL, Timestamp(0));
        let mut owner = sample();
        owner.user_id = Some("someone-else".into());
        let forged = SignedPrincipal {
            principal: key.sign(&owner, CALL, Timestamp(0)).principal,
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
        let signed = key.sign(&sample(), CALL, Timestamp(0));
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
