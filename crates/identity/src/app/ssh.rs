//! The selected account's SSH public keys: add (validated, fingerprinted,
//! unique per account by fingerprint), list newest first, delete.
//!
//! Adding and deleting keys are sensitive: they need a portal session whose
//! authentication is recent (REAUTH_REQUIRED otherwise). The gateway admits
//! only owners for both; listing is open to managers and API tokens.

use serde::{Deserialize, Serialize};
use tenancy_runtime::ids::{self, AccountId, SshKeyId, UserId};
use tenancy_runtime::{Error, Principal};

use super::App;
use crate::domain::error::IdentityError;
use crate::domain::profile::parse_label;
use crate::domain::ssh::parse_ssh_public_key;
use crate::store::ssh_keys::{self, SshKeyRow};

/// Keys one account may hold.
pub(crate) const MAX_KEYS_PER_ACCOUNT: i64 = 100;

/// Where the next page of ListSshKeys starts (after this key), and for
/// which account the token was issued.
#[derive(Serialize, Deserialize)]
struct Cursor {
    account: String,
    time: i64,
    id: String,
}

impl App {
    /// A portal session with recent authentication, for key changes.
    async fn require_recent_portal(
        &self,
        p: &Principal,
    ) -> Result<(UserId, AccountId), IdentityError> {
        let user_id = UserId::trusted(p.user()?);
        let account_id = AccountId::trusted(p.account()?);
        self.recent_portal_session(
            p,
            "SSH keys are changed in a portal session, not with an API token",
        )
        .await?;
        Ok((user_id, account_id))
    }

    /// AddSshKey.
    pub(crate) async fn add_ssh_key(
        &self,
        p: &Principal,
        name: &str,
        public_key: &str,
    ) -> Result<SshKeyRow, IdentityError> {
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
        let id = SshKeyId::new();
        let tx = crate::store::begin(&self.db).await?;
        if ssh_keys::count(&tx, &account_id).await? >= MAX_KEYS_PER_ACCOUNT {
            return Err(IdentityError::SshKeyLimitReached {
                limit: MAX_KEYS_PER_ACCOUNT,
            });
        }
        let row = SshKeyRow {
            id: id.clone(),
            account_id,
            name,
            public_key: key.line,
            fingerprint: key.fingerprint,
            algorithm: key.algorithm as i32,
            bits: i32::try_from(key.bits).unwrap_or(i32::MAX),
            comment: key.comment,
            create_time: self.now().millis(),
            created_by: user_id,
        };
        if !ssh_keys::insert(&tx, &row).await? {
            return Err(IdentityError::SshKeyExists);
        }
        let stored = ssh_keys::get_key(&tx, &id)
            .await?
            .ok_or_else(|| Error::internal("SSH key vanished"))?;
        tx.commit().await?;
        Ok(stored)
    }

    /// ListSshKeys: newest first, keyset-paginated, `size` a page.
    pub(crate) async fn list_ssh_keys(
        &self,
        account_id: &AccountId,
        size: u64,
        page_token: &str,
    ) -> Result<(Vec<SshKeyRow>, String), IdentityError> {
        let after =
            ids::decode_page_token_for::<Cursor>(page_token, |c| c.account == account_id.as_str())?;
        let (time, id) = after.map_or((i64::MAX, String::new()), |c| (c.time, c.id));
        let limit = i64::try_from(size).unwrap_or(50) + 1;
        let mut keys = ssh_keys::page(&self.db, account_id, time, &id, limit).await?;
        let mut next = String::new();
        if keys.len() > usize::try_from(size).unwrap_or(50) {
            keys.pop();
            if let Some(last) = keys.last() {
                next = ids::encode_page_token(&Cursor {
                    account: account_id.to_string(),
                    time: last.create_time,
                    id: last.id.to_string(),
                });
            }
        }
        Ok((keys, next))
    }

    /// DeleteSshKey: only keys of the selected account (`None`: an id that
    /// cannot be one, refused as not found after the session checks).
    pub(crate) async fn delete_ssh_key(
        &self,
        p: &Principal,
        id: Option<&SshKeyId>,
    ) -> Result<(), IdentityError> {
        let (_, account_id) = self.require_recent_portal(p).await?;
        let id = id.ok_or(IdentityError::SshKeyNotFound)?;
        if !ssh_keys::delete(&self.db, id, &account_id).await? {
            return Err(IdentityError::SshKeyNotFound);
        }
        Ok(())
    }
}
