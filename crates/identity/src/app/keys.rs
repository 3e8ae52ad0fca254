//! Access-token signing keys (Ed25519, stored encrypted) and JWTs.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore as _;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use tenancy_proto::identity as pb;
use tenancy_runtime::{Error, Timestamp, ids};

use super::App;
use super::revocations::Revocation;
use crate::domain::error::IdentityError;
use crate::store::keys::{self, KeyRow};

/// How long verifiers may cache GetJwks; a new key is published this long
/// before it signs.
pub(crate) const JWKS_CACHE: Duration = Duration::from_secs(300);

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The claims of a portal access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Claims {
    /// Issuer.
    pub(crate) iss: String,
    /// Audience.
    pub(crate) aud: String,
    /// The user.
    pub(crate) sub: String,
    /// The session.
    pub(crate) sid: String,
    /// The selected account.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) acc: Option<String>,
    /// Issued at (s).
    pub(crate) iat: i64,
    /// Not before (s): the issue time; verifiers refuse the token before
    /// it (with their clock-skew leeway).
    pub(crate) nbf: i64,
    /// The revocation log's position when the token was issued: a
    /// revocation by cut-off (USER_TOKENS_BEFORE, USER_ACCOUNT) ends the
    /// tokens whose `rev` is below the event's position, which orders
    /// tokens and revocations exactly, whatever the clocks say.
    pub(crate) rev: i64,
    /// Expires at (s).
    pub(crate) exp: i64,
    /// When the session last proved its credentials (s).
    pub(crate) auth_time: i64,
    /// RFC 8176 methods.
    pub(crate) amr: Vec<String>,
    /// Whether the user has TOTP on.
    pub(crate) mfa: bool,
    /// Whether the user is staff.
    pub(crate) staff: bool,
    /// Token kind: [`tenancy_runtime::access_token::KIND`].
    pub(crate) kind: String,
}

/// A signing key's public half as verifiers see it (Ed25519).
pub(crate) struct PublicKey {
    /// The key id.
    pub(crate) kid: String,
    /// The public key, base64url.
    pub(crate) x: String,
    /// When it starts signing.
    pub(crate) not_before: Timestamp,
    /// After when no token it signed is valid, once it is retired.
    pub(crate) not_after: Option<Timestamp>,
}

impl App {
    async fn keys<C: ConnectionTrait>(&self, c: &C) -> Result<Vec<KeyRow>, IdentityError> {
        Ok(keys::live(c).await?)
    }

    /// Creates a key pair, stored with its private half encrypted.
    async fn insert_key<C: ConnectionTrait>(
        &self,
        c: &C,
        activate: Timestamp,
    ) -> Result<(String, String), IdentityError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let kid = ids::new_id();
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let sealed = self.secrets.seal(&der, &kid).map_err(Error::internal)?;
        let x = URL_SAFE_NO_PAD.encode(public);
        let key = KeyRow {
            kid,
            private_key: sealed,
            public_x: x,
            activate_time: activate.millis(),
            retire_time: None,
        };
        keys::insert(c, &key, self.now().millis()).await?;
        Ok((key.kid, key.public_x))
    }

    /// Makes sure a signing key exists (first start).
    pub(crate) async fn ensure_signing_key(&self) -> Result<(), IdentityError> {
        if self.keys(&self.db).await?.is_empty() {
            self.insert_key(&self.db, self.now()).await?;
        }
        Ok(())
    }

    /// Signs claims with the current key.
    pub(crate) async fn sign(&self, claims: &Claims) -> Result<String, IdentityError> {
        let now = self.now().millis();
        let keys = self.keys(&self.db).await?;
        let key = keys
            .iter()
            .find(|k| k.activate_time <= now && k.retire_time.is_none_or(|r| r > now))
            .or_else(|| keys.iter().find(|k| k.activate_time <= now));
        let key = match key {
            Some(k) => k,
            None => {
                self.insert_key(&self.db, self.now()).await?;
                return Box::pin(self.sign(claims)).await;
            }
        };
        let der = self
            .secrets
            .open(&key.private_key, &key.kid)
            .map_err(Error::internal)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        // Typed, so that no other JWT these keys may sign one day passes
        // for an access token (RFC 9068 §2.1).
        header.typ = Some(tenancy_runtime::access_token::TYP.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
            .map_err(|e| Error::internal(format_args!("jwt: {e}")).into())
    }

    /// GetJwks: current key first, then next and retired keys still valid.
    pub(crate) async fn jwks(&self) -> Result<Vec<PublicKey>, IdentityError> {
        let now = self.now().millis();
        let lifetime = i64::try_from(self.auth.access_token_lifetime.as_millis()).unwrap_or(0);
        let keys = self.keys(&self.db).await?;
        let mut current: Vec<PublicKey> = Vec::new();
        let mut others: Vec<PublicKey> = Vec::new();
        let mut current_found = false;
        for k in keys {
            if k.retire_time.is_some_and(|r| r + lifetime <= now) {
                continue;
            }
            let jwk = PublicKey {
                kid: k.kid.clone(),
                x: k.public_x.clone(),
                not_before: Timestamp(k.activate_time),
                not_after: k.retire_time.map(|r| Timestamp(r + lifetime)),
            };
            let is_current =
                !current_found && k.activate_time <= now && k.retire_time.is_none_or(|r| r > now);
            if is_current {
                current_found = true;
                current.push(jwk);
            } else {
                others.push(jwk);
            }
        }
        current.extend(others);
        Ok(current)
    }

    /// RotateSigningKey.
    pub(crate) async fn rotate_signing_key(
        &self,
        by: &crate::domain::admin::Operator,
        revoke_current: bool,
    ) -> Result<(PublicKey, String), IdentityError> {
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        // Serialise rotations (and take the revocation head lock first).
        let keys = self.keys(&tx).await?;
        let pending = keys.iter().any(|k| k.activate_time > now.millis());
        if pending && !revoke_current {
            return Err(IdentityError::RotationInProgress);
        }
        let previous = keys
            .iter()
            .find(|k| k.activate_time <= now.millis() && k.retire_time.is_none())
            .map(|k| k.kid.clone())
            .unwrap_or_default();
        let activate = if revoke_current {
            now
        } else {
            now.plus(JWKS_CACHE)
        };
        let mut withdrawn = Vec::new();
        if revoke_current {
            for k in &keys {
                withdrawn.push(k.kid.clone());
            }
            keys::withdraw_all(&tx, now.millis()).await?;
        } else {
            keys::retire_current(&tx, activate.millis()).await?;
        }
        let (kid, x) = self.insert_key(&tx, activate).await?;
        self.append_revocation(
            &tx,
            Revocation::SigningKeys { withdrawn },
            pb::RevocationReason::SigningKeyRotated,
        )
        .await?;
        let detail = format!("kid={kid} previous={previous} revoke_current={revoke_current}");
        let action = crate::domain::admin::AdminAction::RotateSigningKey;
        self.audit_admin(&tx, by, action, None, detail).await?;
        tx.commit().await?;
        self.notify_revocations();
        let key = PublicKey {
            kid,
            x,
            not_before: activate,
            not_after: None,
        };
        Ok((key, previous))
    }
}
