//! Security settings (2FA enforcement, IP allowlist) and support access.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::db::{self, get};
use tenancy_runtime::ids::{decode_page_token, encode_page_token, new_id, page_size};
use tenancy_runtime::principal::TokenKind;
use tenancy_runtime::{Error, Reason};

use super::internal::account_not_found;
use super::{Api, allowlist_nets, mask_paths, settings_pb, ts};
use crate::app::policy::settings_entry;
use crate::domain::{MemberStatus, Role, mfa, validate};
use crate::store::{self, AccountRow, i, n, s};

/// The longest support-access grant.
const MAX_SUPPORT_MS: i64 = 30 * 24 * 3600 * 1000;

const GRANT_COLUMNS: &str =
    "id, account_id, granted_by, create_time, expire_time, note, revoke_time, revoked_by";

fn grant_pb(r: &sea_orm::QueryResult, now: i64) -> Result<pb::SupportAccessGrant, Error> {
    let expire: i64 = get(r, "expire_time")?;
    let revoke: Option<i64> = get(r, "revoke_time")?;
    Ok(pb::SupportAccessGrant {
        id: get(r, "id")?,
        account_id: get(r, "account_id")?,
        active: revoke.is_none() && expire > now,
        granted_by_user_id: get(r, "granted_by")?,
        create_time: Some(ts(get(r, "create_time")?)),
        expire_time: Some(ts(expire)),
        note: get(r, "note")?,
        revoke_time: revoke.map(ts),
        revoked_by_user_id: get(r, "revoked_by")?,
    })
}

#[derive(Serialize, Deserialize)]
struct Token {
    a: String,
}

impl Api {
    pub(super) async fn do_get_security_settings(
        &self,
        request: tonic::Request<pb::GetSecuritySettingsRequest>,
    ) -> Result<pb::GetSecuritySettingsResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let account = AccountRow::load(&self.db, &caller.account_id)
            .await?
            .ok_or_else(account_not_found)?;
        let nets = allowlist_nets(&account);
        let me = self
            .users_or_empty(std::slice::from_ref(&caller.user_id))
            .await;
        let has_mfa = me.get(&caller.user_id).is_some_and(|u| u.totp_enabled);
        Ok(pb::GetSecuritySettingsResponse {
            settings: Some(settings_pb(&account)),
            client_ip: caller
                .principal
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            client_ip_allowed: validate::ip_allowed(&nets, caller.principal.client_ip),
            mfa_deadline: if account.enforce_mfa && !has_mfa {
                caller.member.mfa_deadline.map(ts)
            } else {
                None
            },
        })
    }

    pub(super) async fn do_update_security_settings(
        &self,
        request: tonic::Request<pb::UpdateSecuritySettingsRequest>,
    ) -> Result<pb::UpdateSecuritySettingsResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let paths = mask_paths(
            req.update_mask.as_ref(),
            &["enforce_mfa", "mfa_grace_period", "ip_allowlist"],
        )?;
        let has = |p: &str| paths.iter().any(|x| x == p);
        let input = req.settings.unwrap_or_default();
        let now = self.now();
        // Sensitive: the portal session must have proved its credentials
        // recently.
        if caller.principal.token_kind == TokenKind::Portal {
            let window =
                i64::try_from(self.config.auth.reauth_window.as_millis()).unwrap_or(i64::MAX);
            let fresh = caller
                .principal
                .auth_time
                .is_some_and(|t| now - t.saturating_mul(1000) <= window);
            if !fresh {
                return Err(Error::new(
                    Reason::ReauthRequired,
                    "confirm your password first (Reauthenticate)",
                ));
            }
        }
        let mut grace = None;
        if has("mfa_grace_period") {
            let d = input.mfa_grace_period.unwrap_or_default();
            let ms = d.seconds.saturating_mul(1000);
            if d.seconds < 0 || d.nanos != 0 || ms > mfa::MAX_GRACE_MS {
                return Err(Error::invalid_field(
                    "settings.mfa_grace_period",
                    "whole seconds from 0 to 30 days",
                ));
            }
            grace = Some(ms);
        }
        let mut allowlist = None;
        if has("ip_allowlist") {
            if input.ip_allowlist.len() > validate::MAX_ALLOWLIST {
                return Err(Error::new(Reason::AllowlistTooLong, "at most 100 entries")
                    .with_field("settings.ip_allowlist", "at most 100 entries"));
            }
            match validate::allowlist(&input.ip_allowlist) {
                Ok(nets) => allowlist = Some(nets),
                Err(bad) => {
                    let mut e = Error::new(Reason::CidrInvalid, "invalid IP allowlist entries");
                    for (k, why) in bad {
                        e = e.with_field(format!("settings.ip_allowlist[{k}]"), why);
                    }
                    return Err(e);
                }
            }
        }
        if let Some(nets) = &allowlist
            && !req.force
            && !validate::ip_allowed(nets, caller.principal.client_ip)
        {
            let ip = caller
                .principal
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default();
            return Err(Error::new(Reason::SelfLockout, "the new allowlist does not contain your current address; set force to apply it anyway",
                )
                .with_metadata("client_ip", ip));
        }
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        let before = AccountRow::load(&txn, &caller.account_id)
            .await?
            .ok_or_else(account_not_found)?;
        let mut row = before.clone();
        if has("enforce_mfa") {
            row.enforce_mfa = input.enforce_mfa;
        }
        if let Some(g) = grace {
            row.mfa_grace_ms = g;
        }
        if let Some(nets) = &allowlist {
            let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
            row.ip_allowlist_json = serde_json::to_string(&list).map_err(Error::internal)?;
        }
        let turned_on = row.enforce_mfa && !before.enforce_mfa;
        if turned_on {
            row.enforce_mfa_time = Some(now);
            store::start_mfa_deadlines(&txn, &row.id, now, row.mfa_grace_ms).await?;
        } else if row.enforce_mfa && row.mfa_grace_ms != before.mfa_grace_ms {
            // Re-saving never extends a personal deadline; tightening
            // shortens it.
            let start = row.enforce_mfa_time.unwrap_or(now);
            store::resave_mfa_deadlines(&txn, &row.id, start, row.mfa_grace_ms).await?;
        } else if !row.enforce_mfa && before.enforce_mfa {
            row.enforce_mfa_time = None;
            store::clear_mfa_deadlines(&txn, &row.id).await?;
        }
        row.security_update_time = Some(now);
        row.security_update_user = caller.user_id.to_string();
        row.update(&txn).await?;
        let snap = |a: &AccountRow| {
            serde_json::json!({
                "enforce_mfa": a.enforce_mfa,
                "mfa_grace_period_seconds": a.mfa_grace_ms / 1000,
                "ip_allowlist": super::allowlist_of(a),
            })
        };
        self.audit(
            &caller.principal,
            &row.id,
            "security_settings.update",
            ("account", ""),
            Some(snap(&before)),
            Some(snap(&row)),
        )
        .insert(&txn)
        .await?;
        let mut entries = vec![settings_entry(&row)];
        if turned_on || (row.enforce_mfa && row.mfa_grace_ms != before.mfa_grace_ms) {
            // Personal deadlines moved: gateways enforce each member's own.
            let members = db::all(
                &txn,
                &format!(
                    "SELECT {} FROM account_members WHERE account_id = $1 AND status <> $2",
                    store::member_columns()
                ),
                vec![s(row.id.as_str()), n(MemberStatus::Revoked.code())],
            )
            .await?;
            for member in &members {
                entries.push(crate::app::policy::membership_entry(
                    &store::MemberRow::read(member)?,
                ));
            }
        }
        store::append_policy(&txn, now, entries).await?;
        txn.commit().await?;
        self.policy_committed(&row.id);
        Ok(pb::UpdateSecuritySettingsResponse {
            settings: Some(settings_pb(&row)),
        })
    }

    pub(super) async fn do_grant_support_access(
        &self,
        request: tonic::Request<pb::GrantSupportAccessRequest>,
    ) -> Result<pb::GrantSupportAccessResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let now = self.now();
        let expire = match &req.expiration {
            Some(pb::grant_support_access_request::Expiration::ExpireTime(t)) => {
                let t = super::ms(t);
                if t <= now || t > now + MAX_SUPPORT_MS {
                    return Err(Error::invalid_field(
                        "expire_time",
                        "must be in the future and at most 30 days ahead",
                    ));
                }
                t
            }
            Some(pb::grant_support_access_request::Expiration::Ttl(d)) => {
                let ms = d
                    .seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(d.nanos) / 1_000_000);
                if ms <= 0 || ms > MAX_SUPPORT_MS {
                    return Err(Error::invalid_field(
                        "ttl",
                        "more than 0 and at most 30 days",
                    ));
                }
                now + ms
            }
            None => {
                return Err(Error::invalid_field(
                    "expire_time",
                    "required: expire_time or ttl",
                ));
            }
        };
        let note =
            validate::text(&req.note, 0, 500).map_err(|e| Error::invalid_field("note", e))?;
        let id = new_id();
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        db::exec(
            &txn,
            "UPDATE account_support_grants SET revoke_time = $2, revoked_by = $3 WHERE account_id = $1 AND revoke_time IS NULL AND expire_time > $2",
            vec![s(caller.account_id.as_str()), i(now), s(caller.user_id.as_str())],
        )
        .await?;
        db::exec(
            &txn,
            "INSERT INTO account_support_grants (id, account_id, granted_by, create_time, expire_time, note, revoke_time, revoked_by) VALUES ($1, $2, $3, $4, $5, $6, NULL, '')",
            vec![s(id.as_str()), s(caller.account_id.as_str()), s(caller.user_id.as_str()), i(now), i(expire), s(note.as_str())],
        )
        .await?;
        self.audit(
            &caller.principal,
            &caller.account_id,
            "support_access.grant",
            ("support_access", &id),
            None,
            Some(serde_json::json!({"expire_time_ms": expire, "note": note})),
        )
        .insert(&txn)
        .await?;
        let row = db::one(
            &txn,
            &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE id = $1"),
            vec![s(id.as_str())],
        )
        .await?
        .ok_or_else(|| Error::internal("grant missing"))?;
        let grant = grant_pb(&row, now)?;
        txn.commit().await?;
        Ok(pb::GrantSupportAccessResponse { grant: Some(grant) })
    }

    pub(super) async fn do_revoke_support_access(
        &self,
        request: tonic::Request<pb::RevokeSupportAccessRequest>,
    ) -> Result<pb::RevokeSupportAccessResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let now = self.now();
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        let active = db::one(
            &txn,
            &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE account_id = $1 AND revoke_time IS NULL AND expire_time > $2 ORDER BY create_time DESC, id DESC"),
            vec![s(caller.account_id.as_str()), i(now)],
        )
        .await?;
        let Some(active) = active else {
            txn.commit().await?;
            return Ok(pb::RevokeSupportAccessResponse { grant: None });
        };
        let id: String = get(&active, "id")?;
        db::exec(
            &txn,
            "UPDATE account_support_grants SET revoke_time = $2, revoked_by = $3 WHERE id = $1",
            vec![s(id.as_str()), i(now), s(caller.user_id.as_str())],
        )
        .await?;
        self.audit(
            &caller.principal,
            &caller.account_id,
            "support_access.revoke",
            ("support_access", &id),
            None,
            None,
        )
        .insert(&txn)
        .await?;
        let row = db::one(
            &txn,
            &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE id = $1"),
            vec![s(id.as_str())],
        )
        .await?
        .ok_or_else(|| Error::internal("grant missing"))?;
        let grant = grant_pb(&row, now)?;
        txn.commit().await?;
        Ok(pb::RevokeSupportAccessResponse { grant: Some(grant) })
    }

    pub(super) async fn do_get_support_access(
        &self,
        request: tonic::Request<pb::GetSupportAccessRequest>,
    ) -> Result<pb::GetSupportAccessResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let now = self.now();
        let row = db::one(
            &self.db,
            &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE account_id = $1 ORDER BY create_time DESC, id DESC"),
            vec![s(caller.account_id.as_str())],
        )
        .await?;
        Ok(pb::GetSupportAccessResponse {
            grant: row.map(|r| grant_pb(&r, now)).transpose()?,
        })
    }

    pub(super) async fn do_check_support_access(
        &self,
        req: pb::CheckSupportAccessRequest,
    ) -> Result<pb::CheckSupportAccessResponse, Error> {
        let account_id = req.account_id.trim().to_lowercase();
        if account_id.is_empty() {
            return Err(Error::invalid_field("account_id", "required"));
        }
        if db::one(
            &self.db,
            "SELECT id FROM account_accounts WHERE id = $1",
            vec![s(account_id.as_str())],
        )
        .await?
        .is_none()
        {
            return Err(account_not_found());
        }
        let now = self.now();
        let row = db::one(
            &self.db,
            &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE account_id = $1 AND revoke_time IS NULL AND expire_time > $2 ORDER BY create_time DESC, id DESC"),
            vec![s(account_id.as_str()), i(now)],
        )
        .await?;
        let grant = row.map(|r| grant_pb(&r, now)).transpose()?;
        Ok(pb::CheckSupportAccessResponse {
            active: grant.is_some(),
            expire_time: grant.as_ref().and_then(|g| g.expire_time),
            grant,
        })
    }

    pub(super) async fn do_list_active_support_access_grants(
        &self,
        req: pb::ListActiveSupportAccessGrantsRequest,
    ) -> Result<pb::ListActiveSupportAccessGrantsResponse, Error> {
        let size = page_size(req.page_size)?;
        let after = decode_page_token::<Token>(&req.page_token)?
            .map(|t| t.a)
            .unwrap_or_default();
        let now = self.now();
        let rows = db::all(
            &self.db,
            &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE revoke_time IS NULL AND expire_time > $1 AND account_id > $2 ORDER BY account_id LIMIT {}", size + 1),
            vec![i(now), s(after)],
        )
        .await?;
        let more = rows.len() as u64 > size;
        let grants: Vec<pb::SupportAccessGrant> = rows
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .map(|r| grant_pb(r, now))
            .collect::<Result<_, _>>()?;
        let next_page_token = match (more, grants.last()) {
            (true, Some(g)) => encode_page_token(&Token {
                a: g.account_id.clone(),
            }),
            _ => String::new(),
        };
        Ok(pb::ListActiveSupportAccessGrantsResponse {
            grants,
            next_page_token,
        })
    }
}
