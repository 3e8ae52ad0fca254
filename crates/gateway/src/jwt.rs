//! Access-token (JWT) verification with keys from identity's GetJwks.
//!
//! Only EdDSA is accepted: the algorithm is fixed by us, never read from the
//! token, so `alg: none` and algorithm-confusion tokens fail. Issuer,
//! audience, expiry and not-before (with at most 30 s leeway) are checked,
//! and the token's type: the `typ` header must be `at+jwt` (or `JWT` from
//! identities before it set one) and the `kind` claim `portal`
//! ([`tenancy_runtime::access_token`]), so no other kind of JWT signed with
//! the same keys authenticates a call. Keys are cached by `kid`; an unknown
//! `kid` triggers one refresh (rate-limited).

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;

use tenancy_runtime::clock::{SharedClock, SystemClock};
use tenancy_runtime::{Reason, access_token};

use crate::id::{Id, parse_id};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

/// The claims of a Tenancy access token.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Session id.
    pub sid: String,
    /// Selected account, if any.
    #[serde(default)]
    pub acc: Option<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// The revocation log's position when identity issued the token: cut-off
    /// revocations (USER_TOKENS_BEFORE, USER_ACCOUNT) end the tokens whose
    /// `rev` is below the event's position. Absent (0) in a token from
    /// before positions: any cut-off ends it.
    #[serde(default)]
    pub rev: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Not before (Unix seconds); absent in tokens from before identity
    /// set it.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// When the session last proved its credentials (Unix seconds).
    #[serde(default)]
    pub auth_time: i64,
    /// Authentication methods.
    #[serde(default)]
    pub amr: Vec<String>,
    /// Whether the user has 2FA enabled.
    #[serde(default)]
    pub mfa: bool,
    /// Whether the user is support staff.
    #[serde(default)]
    pub staff: bool,
    /// The token's type: `portal` for an access token.
    #[serde(default)]
    pub kind: Option<String>,
}

/// Authentication methods (RFC 8176) as a set of bits, so a cached token is
/// plain data with nothing on the heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amr(u32);

impl Amr {
    /// The registered values (RFC 8176, section 2). A value outside this
    /// list is dropped when a token is cached: an unknown method can only
    /// have been meant to grant more, never less.
    const NAMES: [&'static str; 21] = [
        "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pop", "pwd",
        "rba", "retina", "sc", "sms", "swk", "tel", "user", "vbm", "wia",
    ];

    /// The set of the registered `names`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set = Self::default();
        for name in names {
            set.insert(name);
        }
        set
    }

    /// The bit of a registered value; 0 (no bit) for any other.
    fn bit(name: &str) -> u32 {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |index| 1 << index)
    }

    /// Adds `name` if it is a registered value.
    pub fn insert(&mut self, name: &str) {
        self.0 |= Self::bit(name);
    }

    /// Whether `name` is in the set.
    pub fn contains(self, name: &str) -> bool {
        let bit = Self::bit(name);
        bit != 0 && self.0 & bit != 0
    }

    /// The values in the set, in registry order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, name)| *name)
    }
}

/// A verified portal access token as the gateway caches and decides from
/// it: ids parsed to 16 bytes, times in milliseconds, `Copy`. A decision
/// then hashes and compares integers and never follows a pointer to a
/// string, which is what keeps it within its budget with 100,000 sessions
/// cached (each pointer followed is a likely cache miss).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortalToken {
    /// The user.
    pub user: Id,
    /// The session.
    pub session: Id,
    /// The selected account, if any.
    pub account: Option<Id>,
    /// The revocation log's position when it was issued (the `rev` claim).
    pub rev: i64,
    /// Expiry (Unix ms).
    pub expire_ms: i64,
    /// When the session last proved its credentials (Unix seconds).
    pub auth_time: i64,
    /// Authentication methods.
    pub amr: Amr,
    /// Whether the user has 2FA enabled.
    pub mfa: bool,
    /// Whether the user is support staff.
    pub staff: bool,
}

impl PortalToken {
    /// The cached form of verified `claims`. Identity issues UUIDs for
    /// users, sessions and accounts; a token carrying anything else is
    /// refused as malformed (and so can never match live state it should
    /// not).
    pub fn from_claims(claims: &Claims) -> Result<Self, TokenError> {
        let id = |text: &str| parse_id(text).ok_or(TokenError::Malformed);
        Ok(Self {
            user: id(&claims.sub)?,
            session: id(&claims.sid)?,
            account: claims.acc.as_deref().map(id).transpose()?,
            rev: claims.rev,
            expire_ms: claims.exp.saturating_mul(1000),
            auth_time: claims.auth_time,
            amr: Amr::from_names(claims.amr.iter().map(String::as_str)),
            mfa: claims.mfa,
            staff: claims.staff,
        })
    }

    /// Whether the caller has a second factor: enrolled, or used one (a
    /// TOTP code, or a passkey: hardware- or software-secured key).
    pub fn has_second_factor(&self) -> bool {
        self.mfa || self.amr.contains("otp") || self.amr.contains("hwk") || self.amr.contains("swk")
    }
}

/// Why a token was refused. The reasons are ErrorInfo reasons.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not ours.
    #[error("malformed token")]
    Malformed,
    /// An algorithm other than EdDSA.
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// Signed by a key we do not know.
    #[error("unknown signing key")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// For another audience.
    #[error("token audience not accepted")]
    WrongAudience,
    /// From another issuer.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// Before its `nbf` (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// A JWT that is not an access token (`typ` header or `kind` claim).
    #[error("not an access token")]
    WrongType,
}

impl TokenError {
    /// The stable ErrorInfo reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Malformed => Reason::TokenMalformed,
            Self::WrongAlgorithm => Reason::TokenAlgorithmRefused,
            Self::UnknownKey(_) => Reason::TokenKeyUnknown,
            Self::BadSignature => Reason::TokenSignatureInvalid,
            Self::Expired => Reason::TokenExpired,
            Self::WrongAudience => Reason::TokenAudienceInvalid,
            Self::WrongIssuer => Reason::TokenIssuerInvalid,
            Self::NotYetValid => Reason::TokenNotYetValid,
            Self::WrongType => Reason::TokenTypeInvalid,
        }
    }
}

/// Verifies access tokens against the published keys.
pub struct JwtVerifier {
    keys: RwLock<HashMap<String, DecodingKey>>,
    validation: Validation,
    /// The time `exp` and `nbf` are checked against: the gateway's clock,
    /// the one its caches and decisions use.
    clock: SharedClock,
}

impl JwtVerifier {
    /// A verifier for tokens of `issuer` for `audience`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // `exp` and `nbf` are checked in `verify`, against `clock`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys: RwLock::new(HashMap::new()),
            validation,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same verifier, checking `exp` and `nbf` against `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the known keys: `(kid, x)` with `x` the base64url Ed25519
    /// public key. Malformed keys are skipped.
    pub fn set_keys<'a>(&self, keys: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let parsed = keys
            .into_iter()
            .filter_map(|(kid, x)| {
                DecodingKey::from_ed_components(x)
                    .ok()
                    .map(|key| (kid.to_owned(), key))
            })
            .collect();
        *self.keys.write() = parsed;
    }

    /// Forgets keys (emergency withdrawal).
    pub fn withdraw(&self, kids: &[String]) {
        let mut keys = self.keys.write();
        for kid in kids {
            keys.remove(kid);
        }
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm);
        }
        if !matches!(
            header.typ.as_deref(),
            Some(access_token::TYP | access_token::LEGACY_TYP)
        ) {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let keys = self.keys.read();
        let key = keys.get(&kid).ok_or(TokenError::UnknownKey(kid))?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            })?;
        if claims.kind.as_deref() != Some(access_token::KIND) {
            return Err(TokenError::WrongType);
        }
        let now = self.clock.now().seconds();
        let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(0);
        if claims.exp.saturating_add(leeway) < now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    struct Issuer {
        kid: &'static str,
        key: SigningKey,
    }

    impl Issuer {
        fn new(kid: &'static str) -> Self {
            Self {
                kid,
                key: SigningKey::generate(&mut rand::rngs::OsRng),
            }
        }

        fn x(&self) -> String {
            URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes())
        }

        fn sign(&self, claims: &serde_json::Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.to_owned());
            header.typ = Some("at+jwt".into());
            self.sign_with(header, claims)
        }

        fn sign_with(&self, header: Header, claims: &serde_json::Value) -> String {
            let der = self.key.to_pkcs8_der().unwrap();
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
                .unwrap()
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        json!({
            "iss": "tenancy", "aud": "tenancy-portal", "sub": "u1", "sid": "s1",
            "acc": "a1", "iat": now() - 10, "exp": now() + exp_offset,
            "auth_time": now() - 10, "amr": ["pwd"], "mfa": false, "staff": false,
            "kind": "portal", "nbf": now() - 10,
        })
    }

    fn verifier(issuer: &Issuer) -> JwtVerifier {
        let verifier = JwtVerifier::new("tenancy", "tenancy-portal");
        let x = issuer.x();
        verifier.set_keys([(issuer.kid, x.as_str())]);
        verifier
    }

    #[test]
    fn a_token_signed_by_a_published_key_verifies() {
        let issuer = Issuer::new("k1");
        let claims = verifier(&issuer)
            .verify(&issuer.sign(&claims(600)))
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.acc.as_deref()),
            ("u1", Some("a1"))
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let issuer = Issuer::new("k1");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims(600).to_string());
        let token = format!("{header}.{payload}.");
        assert!(matches!(
            verifier(&issuer).verify(&token),
            Err(TokenError::Malformed | TokenError::WrongAlgorithm)
        ));
    }

    #[test]
    fn an_hmac_token_keyed_with_the_public_key_is_refused() {
        let issuer = Issuer::new("k1");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(600),
            &EncodingKey::from_secret(issuer.x().as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier(&issuer).verify(&token),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn a_token_signed_by_another_key_under_a_known_kid_is_refused() {
        let real = Issuer::new("k1");
        let forger = Issuer::new("k1");
        assert_eq!(
            verifier(&real).verify(&forger.sign(&claims(600))),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn an_unknown_kid_asks_for_a_key_refresh() {
        let real = Issuer::new("k1");
        let other = Issuer::new("k2");
        assert_eq!(
            verifier(&real).verify(&other.sign(&claims(600))),
            Err(TokenError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn expiry_allows_at_most_30_seconds_of_skew() {
        let issuer = Issuer::new("k1");
        let verifier = verifier(&issuer);
        assert!(
            verifier.verify(&issuer.sign(&claims(-20))).is_ok(),
            "within leeway"
        );
        assert_eq!(
            verifier.verify(&issuer.sign(&claims(-31))),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn wrong_audience_and_issuer_are_refused() {
        let issuer = Issuer::new("k1");
        let verifier = verifier(&issuer);
        let mut other_audience = claims(600);
        other_audience["aud"] = json!("someone-else");
        assert_eq!(
            verifier.verify(&issuer.sign(&other_audience)),
            Err(TokenError::WrongAudience)
        );
        let mut other_issuer = claims(600);
        other_issuer["iss"] = json!("evil");
        assert_eq!(
            verifier.verify(&issuer.sign(&other_issuer)),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn garbage_is_malformed_and_withdrawn_keys_stop_verifying() {
        let issuer = Issuer::new("k1");
        let verifier = verifier(&issuer);
        assert_eq!(verifier.verify("not.a.jwt"), Err(TokenError::Malformed));
        let token = issuer.sign(&claims(600));
        verifier.withdraw(&["k1".to_owned()]);
        assert_eq!(
            verifier.verify(&token),
            Err(TokenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn cached_tokens_need_uuid_ids_and_keep_only_registered_methods() {
        let issuer = Issuer::new("k1");
        let verifier = verifier(&issuer);
        let mut good = claims(600);
        good["sub"] = json!("0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9d");
        good["sid"] = json!("0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9e");
        good["acc"] = json!("0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9f");
        good["amr"] = json!(["pwd", "otp", "made-up"]);
        let token =
            PortalToken::from_claims(&verifier.verify(&issuer.sign(&good)).unwrap()).unwrap();
        assert_eq!(
            crate::id::id_string(token.user),
            "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9d"
        );
        assert_eq!(token.amr.names().collect::<Vec<_>>(), ["otp", "pwd"]);
        assert!(token.has_second_factor());
        assert_eq!(token.expire_ms, good["exp"].as_i64().unwrap() * 1000);

        // The fixture's "u1", "s1", "a1" are not ids identity issues.
        let odd = verifier.verify(&issuer.sign(&claims(600))).unwrap();
        assert_eq!(PortalToken::from_claims(&odd), Err(TokenError::Malformed));
        let mut no_account = good.clone();
        no_account.as_object_mut().unwrap().remove("acc");
        let token =
            PortalToken::from_claims(&verifier.verify(&issuer.sign(&no_account)).unwrap()).unwrap();
        assert_eq!(token.account, None);
        assert!(
            !PortalToken {
                mfa: false,
                amr: Amr::from_names(["pwd"]),
                ..token
            }
            .has_second_factor()
        );
    }

    #[test]
    fn a_token_before_its_nbf_is_refused_beyond_the_leeway() {
        let issuer = Issuer::new("k1");
        let verifier = verifier(&issuer);
        let mut early = claims(600);
        early["nbf"] = json!(now() + 20);
        assert!(
            verifier.verify(&issuer.sign(&early)).is_ok(),
            "within leeway"
        );
        early["nbf"] = json!(now() + 120);
        assert_eq!(
            verifier.verify(&issuer.sign(&early)),
            Err(TokenError::NotYetValid)
        );
        // Tokens from before identity set `nbf` have none: still accepted.
        let mut without = claims(600);
        without.as_object_mut().unwrap().remove("nbf");
        assert!(verifier.verify(&issuer.sign(&without)).is_ok());
    }

    #[test]
    fn only_access_tokens_are_accepted() {
        let issuer = Issuer::new("k1");
        let verifier = verifier(&issuer);
        // Another kind, or none.
        let mut other = claims(600);
        other["kind"] = json!("id");
        assert_eq!(
            verifier.verify(&issuer.sign(&other)),
            Err(TokenError::WrongType)
        );
        other.as_object_mut().unwrap().remove("kind");
        assert_eq!(
            verifier.verify(&issuer.sign(&other)),
            Err(TokenError::WrongType)
        );
        // Another `typ`, or none; the legacy `JWT` with `kind` portal passes.
        for (typ, expected) in [
            (Some("id+jwt"), Err(TokenError::WrongType)),
            (None, Err(TokenError::WrongType)),
            (Some("JWT"), Ok(())),
        ] {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some("k1".into());
            header.typ = typ.map(str::to_owned);
            assert_eq!(
                verifier
                    .verify(&issuer.sign_with(header, &claims(600)))
                    .map(|_| ()),
                expected,
                "{typ:?}"
            );
        }
    }
}
