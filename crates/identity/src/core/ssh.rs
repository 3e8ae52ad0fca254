//! The selected account's SSH public keys: add (validated, fingerprinted,
//! unique per account by fingerprint), list newest first, delete.
//!
//! Adding and deleting keys are sensitive: they need a portal session whose
//! authentication is recent (REAUTH_REQUIRED otherwise). The gateway admits
//! only owners for both; listing is open to managers and API tokens.

use sea_orm::QueryResult;
use serde::{Deserialize, Serialize};
use tenancy_proto::identity as pb;
use tenancy_runtime::principal::TokenKind;
use tenancy_runtime::{Error, Principal, Timestamp, ids};

use super::Core;
use crate::domain::error::IdentityError;
use crate::domain::profile::parse_label;
use crate::domain::ssh::parse_ssh_public_key;
use tenancy_runtime::db::{all, exec, get, one};

/// Keys one account may hold.
pub(crate) const MAX_KEYS_PER_ACCOUNT: i64 = 100;

const COLUMNS: &str = "id, account_id, name, public_key, fingerprint, algorithm, bits, comment, create_time, created_by";

/// Where the next page of ListSshKeys starts (after this key), and for
/// which account the token was issued.
#[derive(Serialize, Deserialize)]
struct Cursor {
    account: String,
    time: i64,
    id: String,
}

fn key_from_row(r: &QueryResult) -> Result<pb::SshKey, IdentityError> {
    Ok(pb::SshKey {
        id: get(r, "id")?,
        account_id: get(r, "account_id")?,
        name: get(r, "name")?,
        public_key: get(r, "public_key")?,
        fingerprint: get(r, "fingerprint")?,
        // INTEGER columns: i32 on both SQLite and PostgreSQL.
        algorithm: get(r, "algorithm")?,
        bits: get(r, "bits")?,
        comment: get(r, "comment")?,
        create_time: Some(Timestamp(get(r, "create_time")?).to_proto()),
        created_by_user_id: get(r, "created_by")?,
    })
}

impl Core {
    /// A portal session with recent authentication, for key changes.
    async fn require_recent_portal(
        &self,
        p: &Principal,
    ) -> Result<(String, String), IdentityError> {
        let user_id = p.user()?.to_owned();
        let account_id = p.account()?.to_owned();
        if p.token_kind != TokenKind::Portal {
            return Err(IdentityError::PortalSessionRequired(
                "SSH keys are changed in a portal session, not with an API token",
            ));
        }
        let session = self.own_session(&user_id, p.session_id.as_deref()).await?;
        self.require_recent(&session)?;
        Ok((user_id, account_id))
    }

    /// AddSshKey.
    pub(crate) async fn add_ssh_key(
        &self,
        p: &Principal,
        name: &str,
        public_key: &str,
    ) -> Result<pb::SshKey, IdentityError> {
        let (user_id, account_id) = self.require_recent_portal(p).await?;
        let name = parse_label("name", name);
        let key = parse_ssh_public_key(public_key);
        let (name, key) = match (name, key) {
            (Ok(n), Ok(k)) => (n, k),
            (n, k) => {
                return Err(IdentityError::several(
                    k.err().into_iter().chain(n.err()).collect(),
                ));
            }
        };
        let now = self.now();
        let id = ids::new_id();
        let tx = crate::store::begin(&self.db).await?;
        let count = one(
            &tx,
            "SELECT COUNT(*) AS n FROM identity_ssh_keys WHERE account_id = $1",
            vec![account_id.clone().into()],
        )
        .await?
        .map(|r| get::<i64>(&r, "n"))
        .transpose()?
        .unwrap_or(0);
        if count >= MAX_KEYS_PER_ACCOUNT {
            return Err(IdentityError::SshKeyLimitReached {
                limit: MAX_KEYS_PER_ACCOUNT,
            });
        }
        let inserted = exec(
            &tx,
            "INSERT INTO identity_ssh_keys (id, account_id, name, public_key, fingerprint, algorithm, \
             bits, comment, create_time, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (account_id, fingerprint) DO NOTHING",
            vec![
                id.clone().into(),
                account_id.into(),
                name.into(),
                key.line.into(),
                key.fingerprint.into(),
                (key.algorithm as i32).into(),
                i32::try_from(key.bits).unwrap_or(i32::MAX).into(),
                key.comment.into(),
                now.millis().into(),
                user_id.into(),
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(IdentityError::SshKeyExists);
        }
        let row = one(
            &tx,
            &format!("SELECT {COLUMNS} FROM identity_ssh_keys WHERE id = $1"),
            vec![id.into()],
        )
        .await?
        .ok_or_else(|| Error::internal("SSH key vanished"))?;
        tx.commit().await?;
        key_from_row(&row)
    }

    /// ListSshKeys: newest first, keyset-paginated.
    pub(crate) async fn list_ssh_keys(
        &self,
        p: &Principal,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<pb::SshKey>, String), IdentityError> {
        let account_id = p.account()?.to_owned();
        let size = ids::page_size(page_size)?;
        let after = ids::decode_page_token_for::<Cursor>(page_token, |c| c.account == account_id)?;
        let (time, id) = after.map_or((i64::MAX, String::new()), |c| (c.time, c.id));
        let limit = i64::try_from(size).unwrap_or(50) + 1;
        let rows = all(
            &self.db,
            &format!(
                "SELECT {COLUMNS} FROM identity_ssh_keys WHERE account_id = $1 \
                 AND (create_time < $2 OR (create_time = $2 AND ($3 = '' OR id < $3))) \
                 ORDER BY create_time DESC, id DESC LIMIT $4"
            ),
            vec![
                account_id.clone().into(),
                time.into(),
                id.into(),
                limit.into(),
            ],
        )
        .await?;
        let mut keys = rows
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = String::new();
        if keys.len() > usize::try_from(size).unwrap_or(50) {
            keys.pop();
            if let Some(last) = keys.last() {
                next = ids::encode_page_token(&Cursor {
                    account: account_id,
                    time: last
                        .create_time
                        .as_ref()
                        .map_or(0, |t| Timestamp::from_proto(t).millis()),
                    id: last.id.clone(),
                });
            }
        }
        Ok((keys, next))
    }

    /// DeleteSshKey: only keys of the selected account.
    pub(crate) async fn delete_ssh_key(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<(), IdentityError> {
        let (_, account_id) = self.require_recent_portal(p).await?;
        let id = ids::parse_id("ssh_key_id", id).map_err(|_| IdentityError::SshKeyNotFound)?;
        let n = exec(
            &self.db,
            "DELETE FROM identity_ssh_keys WHERE id = $1 AND account_id = $2",
            vec![id.into(), account_id.into()],
        )
        .await?;
        if n == 0 {
            return Err(IdentityError::SshKeyNotFound);
        }
        Ok(())
    }
}
