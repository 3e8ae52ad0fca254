//! Security settings (2FA enforcement, IP allowlist) and support access.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::ids::{AccountId, decode_page_token, encode_page_token, page_size};
use tenancy_runtime::principal::TokenKind;
use tenancy_runtime::{Error, Reason};

use super::{Api, allowlist_nets, mask_paths, settings_pb, ts};
use crate::app::members::Actor;
use crate::app::security::{self as app, SettingsChange};
use crate::domain::{AccountError, Role, mfa, validate};
use crate::store::{self, AccountRow, SupportGrantRow};

/// The longest support-access grant.
const MAX_SUPPORT_MS: i64 = 30 * 24 * 3600 * 1000;

/// A grant as the API shows it.
fn grant_pb(g: &SupportGrantRow, now: i64) -> pb::SupportAccessGrant {
    pb::SupportAccessGrant {
        id: g.id.clone(),
        account_id: g.account_id.clone(),
        active: g.active(now),
        granted_by_user_id: g.granted_by.clone(),
        create_time: Some(ts(g.create_time)),
        expire_time: Some(ts(g.expire_time)),
        note: g.note.clone(),
        revoke_time: g.revoke_time.map(ts),
        revoked_by_user_id: g.revoked_by.clone(),
    }
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
            .ok_or(AccountError::AccountNotFound)?;
        let nets = allowlist_nets(&account);
        let me = self
            .users_or_empty(std::slice::from_ref(&caller.user_id))
            .await;
        let has_mfa = me.get(&caller.user_id).is_some_and(|u| u.totp_enabled);
        Ok(pb::GetSecuritySettingsResponse {
            settings: Some(settings_pb(&account.settings())),
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
            &[
                "enforce_mfa",
                "mfa_grace_period",
                "ip_allowlist",
                "server_credential_delivery",
            ],
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
        let mut credential_delivery = None;
        if has("server_credential_delivery") {
            let delivery = input.server_credential_delivery;
            let known = [
                pb::ServerCredentialDelivery::None,
                pb::ServerCredentialDelivery::Email,
                pb::ServerCredentialDelivery::Sms,
            ]
            .iter()
            .any(|d| *d as i32 == delivery);
            if !known {
                return Err(Error::invalid_field(
                    "settings.server_credential_delivery",
                    "NONE, EMAIL or SMS",
                ));
            }
            credential_delivery = Some(delivery);
        }
        let change = SettingsChange {
            enforce_mfa: has("enforce_mfa").then_some(input.enforce_mfa),
            grace_ms: grace,
            allowlist: allowlist.map(|nets| nets.iter().map(ToString::to_string).collect()),
            credential_delivery,
        };
        let actor = Actor::of(&caller.principal)?;
        let row = app::update_settings(self, &actor, change).await?;
        Ok(pb::UpdateSecuritySettingsResponse {
            settings: Some(settings_pb(&row.settings())),
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
        let actor = Actor::of(&caller.principal)?;
        let grant = app::grant_support_access(self, &actor, expire, note).await?;
        Ok(pb::GrantSupportAccessResponse {
            grant: Some(grant_pb(&grant, now)),
        })
    }

    pub(super) async fn do_revoke_support_access(
        &self,
        request: tonic::Request<pb::RevokeSupportAccessRequest>,
    ) -> Result<pb::RevokeSupportAccessResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let now = self.now();
        let actor = Actor::of(&caller.principal)?;
        let grant = app::revoke_support_access(self, &actor).await?;
        Ok(pb::RevokeSupportAccessResponse {
            grant: grant.map(|g| grant_pb(&g, now)),
        })
    }

    pub(super) async fn do_get_support_access(
        &self,
        request: tonic::Request<pb::GetSupportAccessRequest>,
    ) -> Result<pb::GetSupportAccessResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let now = self.now();
        let grant = store::latest_support_grant(&self.db, &caller.account_id).await?;
        Ok(pb::GetSupportAccessResponse {
            grant: grant.map(|g| grant_pb(&g, now)),
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
        // Internal callers' ids are looked up as given (not validated as
        // UUIDs): an unknown one is simply not found.
        let account_id = AccountId::trusted(account_id);
        if !store::account_exists(&self.db, &account_id).await? {
            return Err(AccountError::AccountNotFound.into());
        }
        let now = self.now();
        let grant = store::active_support_grant(&self.db, &account_id, now)
            .await?
            .map(|g| grant_pb(&g, now));
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
        let rows = store::active_support_grants(&self.db, now, &after, size + 1).await?;
        let more = rows.len() as u64 > size;
        let grants: Vec<pb::SupportAccessGrant> = rows
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .map(|g| grant_pb(g, now))
            .collect();
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
