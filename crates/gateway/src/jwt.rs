//! Access-token (JWT) verification with keys from identity's GetJwks.
//!
//! Only EdDSA is accepted: the algorithm is fixed by us, never read from the
//! token, so `alg: none` and algorithm-confusion tokens fail. Issuer,
//! audience and expiry (with at most 30 s leeway) are checked. Keys are
//! cached by `kid`; an unknown `kid` triggers one refresh (rate-limited).

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;

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
    /// Expiry (Unix seconds).
    pub exp: i64,
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
}

impl Claims {
    /// Whether the caller has a second factor: enrolled, or used one.
    pub fn has_second_factor(&self) -> bool {
        self.mfa || self.amr.iter().any(|m| m == "otp")
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
}

impl TokenError {
    /// The stable ErrorInfo reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "TOKEN_MALFORMED",
            Self::WrongAlgorithm => "TOKEN_ALGORITHM_REFUSED",
            Self::UnknownKey(_) => "TOKEN_KEY_UNKNOWN",
            Self::BadSignature => "TOKEN_SIGNATURE_INVALID",
            Self::Expired => "TOKEN_EXPIRED",
            Self::WrongAudience => "TOKEN_AUDIENCE_INVALID",
            Self::WrongIssuer => "TOKEN_ISSUER_INVALID",
        }
    }
}

/// Verifies access tokens against the published keys.
pub struct JwtVerifier {
    keys: RwLock<HashMap<String, DecodingKey>>,
    validation: Validation,
}

impl JwtVerifier {
    /// A verifier for tokens of `issuer` for `audience`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys: RwLock::new(HashMap::new()),
            validation,
        }
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
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let keys = self.keys.read();
        let key = keys.get(&kid).ok_or(TokenError::UnknownKey(kid))?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            })
    }
}
