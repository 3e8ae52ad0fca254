//! From an `authorization` header to a verified credential.
//!
//! Portal access tokens are verified once and cached by a hash of the token:
//! a known token then costs one hash pass and one lookup, no signature
//! check. The hash is a 64-bit SipHash-1-3 tag under a random key drawn at
//! start: without the key nobody can construct a token whose tag equals
//! another's (a blind online search would need ~2^63 requests); and the
//! token itself is not kept in memory (100,000 sessions cost ~50 MB less). SHA-256 would do too, but costs
//! ~2 µs per 400-byte JWT on CPUs without SHA extensions — the whole
//! decision budget.
//! API tokens are resolved through identity's IntrospectApiToken once and
//! cached the same way. Guessing costs the attacker, not identity: a string
//! without the API-token form and checksum is refused here, unknown tokens
//! are remembered briefly, and an address whose introspections keep
//! failing is refused further uncached ones for a while
//! (`limits::FailedLookups`). A dead token gets the same answer
//! whether or not it was cached: identity says why an uncached one is dead
//! (revoked, expired) and [`policy::decide`](crate::policy::decide) says the
//! same of a cached one; unknown or malformed is `TOKEN_INVALID`.

use std::hash::{BuildHasher as _, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::RwLock;
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{GetJwksRequest, IntrospectApiTokenRequest};
use tenancy_runtime::Channel;
use tenancy_runtime::error::reason_of;
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::telemetry::served_span;
use tenancy_runtime::{Error, Reason, Timestamp};
use tonic::service::interceptor::InterceptedService;

use crate::id::parse_id;
use crate::jwt::{Claims, JwtVerifier, LEEWAY_SECONDS, PortalToken, TokenError};
use crate::limits::FailedLookups;
use crate::policy::{ApiToken, Credential};
use crate::state::FastMap;

/// Prefix of Public API tokens.
pub const API_TOKEN_PREFIX: &str = tenancy_runtime::api_token::PREFIX;
/// How long an unknown API token is remembered as unknown.
const NEGATIVE_TTL_MS: i64 = 5_000;
/// How long a revoked or expired API token is remembered as such (it never
/// comes back to life; the bound only lets the cache forget it).
const DEAD_TTL_MS: i64 = 300_000;
/// Least time between two JWKS fetches triggered by unknown `kid`s.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Inserts into a token cache holding at most `max` entries. A full cache
/// first drops the entries `live` says are dead (expired); if more than
/// half of `max` remain, it is emptied. Either way at least `max / 2`
/// insertions pass before the next such sweep, so its cost spreads to a
/// few nanoseconds an insertion, and the table never grows past the
/// buckets `max` entries need: its memory is bounded by `max`.
fn insert_bounded<V>(
    cache: &mut FastMap<TokenTag, V>,
    max: usize,
    tag: TokenTag,
    value: V,
    live: impl FnMut(&V) -> bool,
) {
    if cache.len() >= max.max(1) && !cache.contains_key(&tag) {
        let mut live = live;
        cache.retain(|_, v| live(v));
        if cache.len() > max / 2 {
            cache.clear();
        }
    }
    cache.insert(tag, value);
}

/// Why an API token cannot be used, as identity said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dead {
    /// Never issued, or malformed.
    Unknown,
    /// Revoked.
    Revoked,
    /// Expired.
    Expired,
}

impl Dead {
    fn error(self) -> Error {
        match self {
            Self::Unknown => Error::new(Reason::TokenInvalid, "unknown API token"),
            Self::Revoked => crate::policy::api_token_revoked(),
            Self::Expired => crate::policy::api_token_expired(),
        }
    }
}

#[derive(Clone)]
enum ApiEntry {
    /// A live token, with its own source allowlist (`None`: anywhere).
    Known(ApiToken, Option<Arc<[IpNet]>>),
    Dead {
        why: Dead,
        until_ms: i64,
    },
}

/// A cached token as this call from `ip` presents it: whether `ip` is
/// outside the token's own source allowlist (the decision refuses it then).
fn from(token: ApiToken, allowlist: Option<&[IpNet]>, ip: IpAddr) -> ApiToken {
    ApiToken {
        outside_source_allowlist: allowlist
            .is_some_and(|list| !list.iter().any(|net| net.contains(&ip))),
        ..token
    }
}

/// A keyed 64-bit tag of a token: the cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct TokenTag(u64);

/// Computes [`TokenTag`]s with a key drawn once per process.
struct Tagger(RandomState);

impl Tagger {
    fn new() -> Self {
        Self(RandomState::new())
    }

    fn tag(&self, token: &str) -> TokenTag {
        TokenTag(self.0.hash_one(token))
    }
}

/// Whether `token` is still valid at `now_ms`, with the same leeway as its
/// verification.
fn unexpired(token: &PortalToken, now_ms: i64) -> bool {
    const LEEWAY_MS: i64 = LEEWAY_SECONDS as i64 * 1000;
    token.expire_ms.saturating_add(LEEWAY_MS) > now_ms
}

/// The token of an `authorization: Bearer <token>` header.
pub fn bearer_token(header: &http::HeaderValue) -> Result<&str, Error> {
    header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::new(
                Reason::CredentialsMalformed,
                "expected `authorization: Bearer <token>`",
            )
        })
}

/// Resolves credentials; shared by every connection.
pub struct Authenticator {
    jwt: JwtVerifier,
    tagger: Tagger,
    /// Verified portal tokens, inline (no pointer to follow on a hit).
    portal: RwLock<FastMap<TokenTag, PortalToken>>,
    api: RwLock<FastMap<TokenTag, ApiEntry>>,
    identity_public: IdentityServiceClient<InterceptedService<Channel, ServiceAuth>>,
    identity_internal: IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>,
    last_jwks_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Signs the principal of the gateway's own PUBLIC calls (GetJwks):
    /// identity serves PUBLIC methods only with one, as it does for
    /// forwarded calls.
    signer: Signer,
    lookups: crate::metrics::TokenCache,
    /// Failed introspections per client address.
    failures: FailedLookups,
    /// Most tokens each cache holds (`gateway.max_cached_tokens`).
    max_cached: usize,
}

/// What signs the gateway's principals: the key, time, unique call ids.
pub struct Signer {
    /// The principal key.
    pub key: tenancy_runtime::PrincipalKey,
    /// Time.
    pub clock: tenancy_runtime::clock::SharedClock,
    /// Call ids.
    pub ids: tenancy_runtime::principal::CallIds,
}

impl Signer {
    /// `principal`, signed for one call of `method`.
    pub fn sign(
        &self,
        principal: &tenancy_runtime::Principal,
        method: &str,
    ) -> tenancy_runtime::principal::SignedPrincipal {
        self.key.sign(
            principal,
            tenancy_runtime::principal::Call {
                method,
                id: self.ids.next(),
            },
            self.clock.now(),
        )
    }
}

impl Authenticator {
    /// An authenticator asking identity over `channel`.
    pub fn new(
        issuer: &str,
        audience: &str,
        channel: Channel,
        auth: ServiceAuth,
        signer: Signer,
    ) -> Self {
        Self {
            jwt: JwtVerifier::new(issuer, audience).with_clock(signer.clock.clone()),
            tagger: Tagger::new(),
            portal: RwLock::new(FastMap::default()),
            api: RwLock::new(FastMap::default()),
            identity_public: IdentityServiceClient::with_interceptor(channel.clone(), auth.clone()),
            identity_internal: IdentityInternalServiceClient::with_interceptor(channel, auth),
            last_jwks_fetch: tokio::sync::Mutex::new(None),
            signer,
            lookups: crate::metrics::TokenCache::default(),
            failures: FailedLookups::new(
                &tenancy_runtime::config::GatewayConfig::default(),
                tenancy_runtime::metrics::Counter::default(),
            ),
            max_cached: tenancy_runtime::config::GatewayConfig::default().max_cached_tokens,
        }
    }

    /// The same authenticator, caching at most `max` portal tokens and `max`
    /// API tokens (`gateway.max_cached_tokens`).
    pub fn caching_at_most(mut self, max: usize) -> Self {
        self.max_cached = max;
        self
    }

    /// The same authenticator, limiting failed API-token introspections
    /// per client address as `config` says, counting refusals into
    /// `refused`.
    pub(crate) fn limiting_failures(
        mut self,
        config: &tenancy_runtime::config::GatewayConfig,
        refused: tenancy_runtime::metrics::Counter,
    ) -> Self {
        self.failures = FailedLookups::new(config, refused);
        self
    }

    /// The same authenticator, counting cache hits and misses into
    /// `metrics`.
    pub fn measured(mut self, metrics: &tenancy_runtime::Metrics) -> Self {
        self.lookups = crate::metrics::TokenCache::new(metrics);
        self
    }

    /// How many portal and API tokens are cached.
    pub fn cached(&self) -> (usize, usize) {
        (self.portal.read().len(), self.api.read().len())
    }

    /// The credential of a request from `ip`; `Ok(None)` without an
    /// `authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
        ip: IpAddr,
        now_ms: i64,
    ) -> Result<Option<Credential>, Error> {
        let Some(header) = authorization else {
            return Ok(None);
        };
        let token = bearer_token(header)?;
        if token.starts_with(API_TOKEN_PREFIX) {
            self.api_token(token, ip, now_ms)
                .await
                .map(|t| Some(Credential::Api(t)))
        } else {
            self.portal_token(token, now_ms)
                .await
                .map(|c| Some(Credential::Portal(c)))
        }
    }

    /// Caches a verified portal token (see [`insert_bounded`]).
    fn cache_portal(&self, token: &str, verified: PortalToken, now_ms: i64) {
        insert_bounded(
            &mut self.portal.write(),
            self.max_cached,
            self.tagger.tag(token),
            verified,
            |cached| unexpired(cached, now_ms),
        );
    }

    /// A cached portal token, if known and unexpired: the hot path.
    pub fn cached_portal(&self, token: &str, now_ms: i64) -> Option<PortalToken> {
        let tag = self.tagger.tag(token);
        self.portal
            .read()
            .get(&tag)
            .copied()
            .filter(|cached| unexpired(cached, now_ms))
    }

    async fn portal_token(&self, token: &str, now_ms: i64) -> Result<PortalToken, Error> {
        if let Some(claims) = self.cached_portal(token, now_ms) {
            self.lookups.portal_hit.inc();
            return Ok(claims);
        }
        self.lookups.portal_miss.inc();
        let verified = match self.jwt.verify(token) {
            Err(TokenError::UnknownKey(_)) => {
                self.refresh_keys().await?;
                self.jwt.verify(token)
            }
            other => other,
        }
        .and_then(|claims| PortalToken::from_claims(&claims))
        .map_err(|e| Error::new(e.reason(), e.to_string()))?;
        self.cache_portal(token, verified, now_ms);
        Ok(verified)
    }

    async fn api_token(&self, token: &str, ip: IpAddr, now_ms: i64) -> Result<ApiToken, Error> {
        // Garbage and typos are told apart offline: no lookup, no cache
        // entry, no introspection.
        if !tenancy_runtime::api_token::well_formed(token) {
            return Err(Error::new(
                Reason::TokenMalformed,
                "not an API token (wrong length, characters or checksum)",
            ));
        }
        let tag = self.tagger.tag(token);
        if let Some(cached) = self.cached_api_tagged(tag, ip, now_ms) {
            self.lookups.api_hit.inc();
            return cached;
        }
        self.lookups.api_miss.inc();
        self.failures.check(ip)?;
        let answer = self
            .identity_internal
            .clone()
            .introspect_api_token(IntrospectApiTokenRequest {
                secret: token.to_owned(),
            })
            .await;
        let dead = |why, ttl| ApiEntry::Dead {
            why,
            until_ms: now_ms + ttl,
        };
        let entry = match answer {
            Ok(response) => {
                let r = response.into_inner();
                let (Some(id), Some(user_id), Some(account_id)) = (
                    parse_id(&r.api_token_id),
                    parse_id(&r.user_id),
                    parse_id(&r.account_id),
                ) else {
                    // Identity issues UUIDs; anything else is refused, never
                    // guessed at.
                    served_span().in_scope(|| {
                        tracing::warn!("API token introspection answered ids that are not UUIDs");
                    });
                    return Err(Dead::Unknown.error());
                };
                let allowlist = crate::sync::networks(&r.source_allowlist).map(Arc::from);
                ApiEntry::Known(
                    ApiToken {
                        id,
                        user_id,
                        account_id,
                        read_only: r.read_only,
                        expire_ms: r
                            .expire_time
                            .as_ref()
                            .map(|t| Timestamp::from_proto(t).millis()),
                        mfa: r.mfa_enabled,
                        outside_source_allowlist: false,
                    },
                    allowlist,
                )
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                match reason_of(&status) {
                    Some(Reason::TokenRevoked) => dead(Dead::Revoked, DEAD_TTL_MS),
                    Some(Reason::TokenExpired) => dead(Dead::Expired, DEAD_TTL_MS),
                    _ => dead(Dead::Unknown, NEGATIVE_TTL_MS),
                }
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::InvalidArgument
                ) =>
            {
                dead(Dead::Unknown, NEGATIVE_TTL_MS)
            }
            Err(status) => {
                served_span().in_scope(|| {
                    tracing::warn!(code = ?status.code(), "API token introspection failed");
                });
                return Err(Error::unavailable("cannot check the API token now; retry")
                    .with_metadata("service", "identity"));
            }
        };
        if matches!(
            entry,
            ApiEntry::Dead {
                why: Dead::Unknown,
                ..
            }
        ) {
            self.failures.failed(ip);
        }
        insert_bounded(
            &mut self.api.write(),
            self.max_cached,
            tag,
            entry.clone(),
            |cached| !matches!(cached, ApiEntry::Dead { until_ms, .. } if *until_ms <= now_ms),
        );
        match entry {
            ApiEntry::Known(t, allowlist) => Ok(from(t, allowlist.as_deref(), ip)),
            ApiEntry::Dead { why, .. } => Err(why.error()),
        }
    }

    /// The cached answer for an API token used from `ip`, if there is one
    /// (the token, marked when `ip` is outside its source allowlist, or
    /// the refusal remembered for a dead one).
    pub fn cached_api(
        &self,
        token: &str,
        ip: IpAddr,
        now_ms: i64,
    ) -> Option<Result<ApiToken, Error>> {
        self.cached_api_tagged(self.tagger.tag(token), ip, now_ms)
    }

    fn cached_api_tagged(
        &self,
        tag: TokenTag,
        ip: IpAddr,
        now_ms: i64,
    ) -> Option<Result<ApiToken, Error>> {
        match self.api.read().get(&tag)? {
            ApiEntry::Known(t, allowlist) => Some(Ok(from(*t, allowlist.as_deref(), ip))),
            ApiEntry::Dead { why, until_ms } if *until_ms > now_ms => Some(Err(why.error())),
            ApiEntry::Dead { .. } => None,
        }
    }

    /// Inserts an introspected API token directly, with its own source
    /// allowlist (benchmarks and tests of the hot path).
    pub fn insert_introspected(&self, token: &str, api: ApiToken, allowlist: Option<Vec<IpNet>>) {
        self.api.write().insert(
            self.tagger.tag(token),
            ApiEntry::Known(api, allowlist.map(Arc::from)),
        );
    }

    /// Forgets every cached API-token introspection (after a revocation
    /// log reset, or when the 2FA states that correct them were dropped).
    pub fn forget_api_tokens(&self) {
        self.api.write().clear();
    }

    /// Fetches the published keys (at most once per second when triggered
    /// by unknown `kid`s).
    pub async fn refresh_keys(&self) -> Result<(), Error> {
        let mut last = self.last_jwks_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_REFRESH_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let mut request = tonic::Request::new(GetJwksRequest::default());
        self.signer
            .sign(
                &tenancy_runtime::Principal::anonymous(None, "gateway-jwks"),
                "/tenancy.identity.v1.IdentityService/GetJwks",
            )
            .insert_into_metadata(request.metadata_mut());
        let response = self
            .identity_public
            .clone()
            .get_jwks(request)
            .await
            .map_err(|status| {
                served_span().in_scope(|| {
                    tracing::warn!(code = ?status.code(), "cannot fetch signing keys");
                });
                Error::unavailable("cannot fetch signing keys; retry")
                    .with_metadata("service", "identity")
            })?
            .into_inner();
        self.jwt
            .set_keys(response.keys.iter().map(|k| (k.kid.as_str(), k.x.as_str())));
        Ok(())
    }

    /// Keys were rotated or withdrawn: forget withdrawn keys and every cached
    /// token (tokens signed by a withdrawn key must fail at once).
    pub async fn signing_keys_changed(&self, withdrawn: &[String]) {
        self.jwt.withdraw(withdrawn);
        self.portal.write().clear();
        *self.last_jwks_fetch.lock().await = None;
        if let Err(error) = self.refresh_keys().await {
            tracing::warn!(%error, "key refresh after rotation failed");
        }
    }

    /// Drops expired entries; run periodically.
    pub fn prune(&self, now_ms: i64) {
        self.failures.prune();
        self.portal.write().retain(|_, c| unexpired(c, now_ms));
        self.api.write().retain(|_, e| match e {
            ApiEntry::Known(t, _) => t.expire_ms.is_none_or(|x| x > now_ms),
            ApiEntry::Dead { until_ms, .. } => *until_ms > now_ms,
        });
    }

    /// Number of cached portal tokens (for the memory benchmark).
    pub fn cached_portal_tokens(&self) -> usize {
        self.portal.read().len()
    }

    /// Inserts verified claims directly (benchmarks and tests of the hot
    /// path).
    pub fn insert_verified(&self, token: &str, claims: &Claims) -> Result<(), TokenError> {
        let verified = PortalToken::from_claims(claims)?;
        let now_ms = self.signer.clock.now().millis();
        self.cache_portal(token, verified, now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An authenticator whose identity is a closed port: every lookup
    /// fails UNAVAILABLE.
    fn without_identity() -> Authenticator {
        let mut config = tenancy_runtime::config::Config::default();
        config.identity.url = Some("https://127.0.0.1:1".into());
        let channel = tenancy_runtime::service::channel_to(
            &config,
            &Arc::new(tenancy_runtime::TlsParts::new(&config.tls)),
            tenancy_runtime::tls::Caller::Gateway,
            tenancy_runtime::config::ServiceName::Identity,
        )
        .unwrap();
        Authenticator::new(
            "tenancy",
            "tenancy-portal",
            channel,
            ServiceAuth::new(),
            Signer {
                key: tenancy_runtime::PrincipalKey::generate(),
                clock: Arc::new(tenancy_runtime::clock::SystemClock),
                ids: Default::default(),
            },
        )
    }

    /// Without span export the gateway serves a call with no span of its
    /// own; a warning written while authenticating it (identity cannot be
    /// asked about an API token, or about signing keys) still carries the
    /// caller's trace id, the method and the request id.
    #[tokio::test]
    async fn warnings_while_authenticating_carry_the_calls_trace_id_without_export() {
        let lines = tenancy_runtime::telemetry::LogLines::default();
        let _logs = tracing::subscriber::set_default(tenancy_runtime::telemetry::json_logs_to(
            "warn",
            lines.clone(),
        ));
        assert!(!tenancy_runtime::telemetry::exporting());
        let authenticator = without_identity();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut headers = http::HeaderMap::new();
        headers.insert(
            tenancy_runtime::telemetry::TRACEPARENT,
            format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
        );
        let method = "/tenancy.identity.v1.IdentityService/GetMe";
        let call =
            tenancy_runtime::telemetry::ServerCall::start(method, "gateway", "req-7", &headers);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let api = format!("Bearer {}", tenancy_runtime::api_token::generate());
        let refused = call
            .instrument(authenticator.authenticate(Some(&api.parse().unwrap()), ip, 0))
            .await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unavailable);
        let refused = call.instrument(authenticator.refresh_keys()).await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unavailable);

        let logged = lines.json();
        let messages: Vec<_> = logged.iter().map(|l| l["message"].clone()).collect();
        for gateways in [
            "API token introspection failed",
            "cannot fetch signing keys",
        ] {
            let line = logged
                .iter()
                .find(|l| l["message"] == gateways)
                .unwrap_or_else(|| panic!("no {gateways:?} in {messages:?}"));
            assert_eq!(line["span"]["method"], method, "{line}");
            assert_eq!(line["span"]["request_id"], "req-7", "{line}");
            assert_eq!(line["span"]["part"], "gateway", "{line}");
        }
        // Every line of the call, the channel's own warnings about the
        // unreachable replica included, names its trace.
        for line in &logged {
            assert_eq!(line["span"]["trace_id"], trace, "{line}");
        }
    }

    #[test]
    fn a_full_token_cache_sweeps_the_dead_first_then_empties_and_never_outgrows_its_bound() {
        let mut cache: FastMap<TokenTag, i64> = FastMap::default();
        let live = |until: &i64| *until > 100;
        // Half of them already dead (`until` 0).
        for n in 0..8u64 {
            insert_bounded(
                &mut cache,
                8,
                TokenTag(n),
                i64::from(n % 2 == 0) * 1_000,
                live,
            );
        }
        assert_eq!(cache.len(), 8);
        // Full: the dead go, the live stay (4 of 8: not over half).
        insert_bounded(&mut cache, 8, TokenTag(100), 1_000, live);
        assert_eq!(cache.len(), 5);
        assert!(cache.contains_key(&TokenTag(0)) && !cache.contains_key(&TokenTag(1)));
        // Replacing a cached entry never sweeps.
        for n in 200..203u64 {
            insert_bounded(&mut cache, 8, TokenTag(n), 1_000, live);
        }
        insert_bounded(&mut cache, 8, TokenTag(0), 2_000, live);
        assert_eq!(cache.len(), 8);
        // Full of live entries: emptied, then the new one.
        insert_bounded(&mut cache, 8, TokenTag(300), 1_000, live);
        assert_eq!(cache.len(), 1);
        // However many go in, it never holds more than its bound.
        for n in 1_000..2_000u64 {
            insert_bounded(&mut cache, 8, TokenTag(n), 1_000, live);
            assert!(cache.len() <= 8);
        }
    }
}
