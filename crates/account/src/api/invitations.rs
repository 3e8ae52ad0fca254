//! Invitations: invite, list, resend, cancel, accept.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{
    AccountId, UserId, decode_page_token_for, encode_page_token, new_id, page_size, parse_id,
};
use tenancy_runtime::secret::SecretToken;
use tenancy_runtime::{Error, Reason};

use super::members::ScopeFields;
use super::{Api, Caller, fingerprint, join_deadline, scope_pb, ts};
use crate::app::policy::{membership_entry, role_name};
use crate::domain::{
    AccountError, InvitationState, MemberStatus, Role, Scope, ServiceAccess, validate,
};
use crate::peers::UserInfo;
use crate::store::{self, AccountRow, CloseAs, InvitationRow, MemberRow};

/// How long an invitation link works.
pub(crate) const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// The shortest time between two sends of one invitation.
const RESEND_INTERVAL_MS: i64 = 60 * 1000;

fn invitation_pb(r: &InvitationRow, now: i64) -> pb::Invitation {
    let state = r.effective_state(now);
    let closed = match state {
        InvitationState::Pending => None,
        InvitationState::Expired => Some(ts(r.close_time.unwrap_or(r.expire_time))),
        _ => r.close_time.map(ts),
    };
    let mut scope = r.scope.clone();
    scope.portal_access = true;
    pb::Invitation {
        id: r.id.clone(),
        account_id: r.account_id.to_string(),
        email: r.email.clone(),
        role: r.role.code(),
        access_scope: Some(scope_pb(&scope)),
        state: state.code(),
        create_time: Some(ts(r.create_time)),
        expire_time: Some(ts(r.expire_time)),
        invited_by_user_id: r.invited_by.clone(),
        send_time: Some(ts(r.send_time)),
        send_count: r.send_count,
        close_time: closed,
        user_id: if state == InvitationState::Accepted || r.for_existing_member {
            r.user_id.clone().unwrap_or_default()
        } else {
            String::new()
        },
    }
}

/// The sort key of an invitee's name: theirs, or the one they give when
/// accepting creates them.
fn name_key(user: &UserInfo, given: &str) -> String {
    if user.name.is_empty() {
        given.trim().to_lowercase()
    } else {
        user.name.to_lowercase()
    }
}

/// RFC 3339 (UTC, seconds) of Unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    tenancy_runtime::Timestamp(ms).rfc3339()
}

#[derive(Serialize, Deserialize)]
struct Token {
    f: String,
    t: i64,
    id: String,
}

impl Api {
    /// Emails the invitation link.
    async fn send_invitation(
        &self,
        inv: &InvitationRow,
        token: &SecretToken,
        inviter: &UserId,
    ) -> Result<(), Error> {
        let account = AccountRow::load(&self.db, &inv.account_id).await?;
        let inviter_name = self
            .users_or_empty(&[inviter.to_owned()])
            .await
            .remove(inviter)
            .map(|u| if u.name.is_empty() { u.email } else { u.name })
            .unwrap_or_default();
        let portal = self.config.mail.portal_url.trim_end_matches('/');
        let data = HashMap::from([
            (
                "account_name".to_owned(),
                account.map(|a| a.name).unwrap_or_default(),
            ),
            ("inviter_name".to_owned(), inviter_name),
            ("role".to_owned(), role_name(inv.role).to_owned()),
            (
                "accept_url".to_owned(),
                format!("{portal}/accept-invitation?token={}", token.expose()),
            ),
            ("expire_time".to_owned(), rfc3339(inv.expire_time)),
        ]);
        self.peers
            .send_email(
                format!("account:invitation:{}:{}", inv.id, inv.send_count),
                (&inv.email, ""),
                MessageTemplate::Invitation,
                data,
                inv.account_id.as_str(),
            )
            .await
    }

    async fn load_invitation(
        &self,
        account_id: &AccountId,
        id: &str,
    ) -> Result<InvitationRow, Error> {
        let id = parse_id("invitation_id", id)?;
        Ok(store::invitation(&self.db, &id, Some(account_id))
            .await?
            .ok_or(AccountError::InvitationNotFound)?)
    }

    pub(super) async fn do_invite_member(
        &self,
        request: tonic::Request<pb::InviteMemberRequest>,
    ) -> Result<pb::InviteMemberResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let mut v = Violations::default();
        let email = v.take("email", validate::email(&req.email));
        let role = Role::from_code(req.role);
        if role.is_none() {
            v.add("role", "must be OWNER or MANAGER");
        }
        v.finish()?;
        let role = role.unwrap_or(Role::Manager);
        let email = email.unwrap_or_default();
        let mut input = req.access_scope.unwrap_or_default();
        if role == Role::Owner && input.service_access == 0 {
            input.service_access = ServiceAccess::All.code();
        }
        let mut scope = self
            .parse_scope(
                &caller.account_id,
                &input,
                &ScopeFields::ALL,
                Scope::default(),
            )
            .await?;
        scope.portal_access = true;
        let (user, _) = self.peers.ensure_user(&email, "").await?;
        let now = self.now();
        let token = SecretToken::generate("tni_");
        let inv = InvitationRow {
            id: new_id(),
            account_id: caller.account_id.clone(),
            email: email.clone(),
            role,
            scope,
            state: InvitationState::Pending,
            token_hash: token.hash(),
            create_time: now,
            expire_time: now + INVITATION_TTL_MS,
            invited_by: caller.user_id.to_string(),
            send_time: now,
            send_count: 1,
            close_time: None,
            user_id: Some(user.id.to_string()),
            for_existing_member: false,
        };
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        if let Some(m) = store::member(&txn, &caller.account_id, &user.id).await?
            && m.status != MemberStatus::Revoked
        {
            return Err(AccountError::MemberExists.into());
        }
        // An expired invitation no longer blocks a new one.
        store::close_pending_invitations(&txn, &caller.account_id, &email, now, CloseAs::Expired)
            .await?;
        if let Err(e) = inv.insert(&txn).await {
            if tenancy_runtime::db::is_unique_violation(&e) {
                return Err(AccountError::InvitationPending.into());
            }
            return Err(e.into());
        }
        self.audit(
            &caller.principal,
            &caller.account_id,
            "member.invite",
            ("invitation", &inv.id),
            None,
            Some(serde_json::json!({"email": email, "role": role_name(inv.role)})),
        )
        .insert(&txn)
        .await?;
        txn.commit().await?;
        self.send_invitation(&inv, &token, &caller.user_id).await?;
        Ok(pb::InviteMemberResponse {
            invitation: Some(invitation_pb(&inv, now)),
        })
    }

    /// An invitation for a member added without a password, sent when an
    /// owner gives them portal access.
    pub(super) async fn invite_existing_member(
        &self,
        caller: &Caller,
        member: &MemberRow,
    ) -> Result<pb::Invitation, Error> {
        let now = self.now();
        let token = SecretToken::generate("tni_");
        let mut scope = store::scope(&self.db, member).await?;
        scope.portal_access = true;
        let email = if member.email.is_empty() {
            self.peers
                .users(std::slice::from_ref(&member.user_id))
                .await?
                .remove(&member.user_id)
                .map(|u| u.email)
                .unwrap_or_default()
        } else {
            member.email.clone()
        };
        let inv = InvitationRow {
            id: new_id(),
            account_id: member.account_id.clone(),
            email: email.clone(),
            role: member.role,
            scope,
            state: InvitationState::Pending,
            token_hash: token.hash(),
            create_time: now,
            expire_time: now + INVITATION_TTL_MS,
            invited_by: caller.user_id.to_string(),
            send_time: now,
            send_count: 1,
            close_time: None,
            // The member's id as the owner sees it (the stand-in until
            // they accept); AcceptInvitation resolves it.
            user_id: Some(member.public_id().to_string()),
            for_existing_member: true,
        };
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &member.account_id).await?;
        store::close_pending_invitations(&txn, &member.account_id, &email, now, CloseAs::Cancelled)
            .await?;
        inv.insert(&txn).await?;
        self.audit(&caller.principal, &member.account_id, "member.invite", ("invitation", &inv.id), None, Some(serde_json::json!({"email": email, "role": role_name(inv.role), "portal_access": true})))
            .insert(&txn)
            .await?;
        txn.commit().await?;
        self.send_invitation(&inv, &token, &caller.user_id).await?;
        Ok(invitation_pb(&inv, now))
    }

    pub(super) async fn do_list_invitations(
        &self,
        request: tonic::Request<pb::ListInvitationsRequest>,
    ) -> Result<pb::ListInvitationsResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        super::at_most("states", req.states.len(), super::limits::ENUM_FILTERS)?;
        let mut states = req.states.clone();
        states.sort_unstable();
        states.dedup();
        let f = fingerprint(&states);
        let cursor = decode_page_token_for::<Token>(&req.page_token, |t| t.f == f)?;
        let now = self.now();
        let wanted: Vec<InvitationState> = states
            .iter()
            .filter_map(|s| InvitationState::from_code(*s))
            .collect();
        let rows = store::list_invitations(
            &self.db,
            &caller.account_id,
            &wanted,
            now,
            cursor.as_ref().map(|c| (c.t, c.id.as_str())),
            size + 1,
        )
        .await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<InvitationRow> = rows
            .into_iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .collect();
        let next_page_token = match (more, rows.last()) {
            (true, Some(l)) => encode_page_token(&Token {
                f,
                t: l.create_time,
                id: l.id.clone(),
            }),
            _ => String::new(),
        };
        Ok(pb::ListInvitationsResponse {
            invitations: rows.iter().map(|r| invitation_pb(r, now)).collect(),
            next_page_token,
        })
    }

    pub(super) async fn do_resend_invitation(
        &self,
        request: tonic::Request<pb::ResendInvitationRequest>,
    ) -> Result<pb::ResendInvitationResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let inv = self
            .load_invitation(&caller.account_id, &request.get_ref().invitation_id)
            .await?;
        self.resend(inv, &caller.principal, &caller.user_id).await
    }

    /// ResendInvitationAsOperator: the same as the owner's ResendInvitation
    /// (limits, audit), for any account's invitation; the email names the
    /// member who invited.
    pub(super) async fn do_operator_resend_invitation(
        &self,
        request: tonic::Request<pb::ResendInvitationAsOperatorRequest>,
    ) -> Result<pb::ResendInvitationResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let id = parse_id("invitation_id", &request.get_ref().invitation_id)?;
        let inv = store::invitation(&self.db, &id, None)
            .await?
            .ok_or(AccountError::InvitationNotFound)?;
        let inviter = UserId::trusted(inv.invited_by.as_str());
        self.resend(inv, &principal, &inviter).await
    }

    /// Sends `inv` again with a new link, at most once a minute, audited as
    /// `principal`'s; the email names `inviter`.
    async fn resend(
        &self,
        mut inv: InvitationRow,
        principal: &tenancy_runtime::Principal,
        inviter: &UserId,
    ) -> Result<pb::ResendInvitationResponse, Error> {
        let now = self.now();
        match inv.state {
            InvitationState::Accepted => return Err(AccountError::InvitationUsed.into()),
            InvitationState::Cancelled => return Err(AccountError::InvitationCancelled.into()),
            _ => {}
        }
        if inv.send_time + RESEND_INTERVAL_MS > now {
            let wait = u64::try_from(inv.send_time + RESEND_INTERVAL_MS - now).unwrap_or(0);
            return Err(Error::throttled(
                Reason::InvitationResendTooSoon,
                std::time::Duration::from_millis(wait),
            ));
        }
        let token = SecretToken::generate("tni_");
        let before_state = inv.effective_state(now);
        inv.state = InvitationState::Pending;
        inv.token_hash = token.hash();
        inv.expire_time = now + INVITATION_TTL_MS;
        inv.send_time = now;
        inv.send_count += 1;
        inv.close_time = None;
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &inv.account_id).await?;
        match store::renew_invitation(&txn, &inv).await {
            Ok(true) => {}
            Ok(false) => return Err(AccountError::InvitationUsed.into()),
            Err(e) if tenancy_runtime::db::is_unique_violation(&e) => {
                return Err(AccountError::InvitationPending.into());
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(
            principal,
            &inv.account_id,
            "invitation.resend",
            ("invitation", &inv.id),
            Some(serde_json::json!({"state": before_state.code()})),
            Some(serde_json::json!({"send_count": inv.send_count})),
        )
        .insert(&txn)
        .await?;
        txn.commit().await?;
        self.send_invitation(&inv, &token, inviter).await?;
        Ok(pb::ResendInvitationResponse {
            invitation: Some(invitation_pb(&inv, now)),
        })
    }

    pub(super) async fn do_cancel_invitation(
        &self,
        request: tonic::Request<pb::CancelInvitationRequest>,
    ) -> Result<pb::CancelInvitationResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let mut inv = self
            .load_invitation(&caller.account_id, &request.get_ref().invitation_id)
            .await?;
        let now = self.now();
        match inv.state {
            InvitationState::Accepted => return Err(AccountError::InvitationUsed.into()),
            InvitationState::Cancelled => {
                return Ok(pb::CancelInvitationResponse {
                    invitation: Some(invitation_pb(&inv, now)),
                });
            }
            _ => {}
        }
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        if !store::cancel_invitation(&txn, &inv.id, now).await? {
            return Err(AccountError::InvitationUsed.into());
        }
        self.audit(
            &caller.principal,
            &caller.account_id,
            "invitation.cancel",
            ("invitation", &inv.id),
            None,
            None,
        )
        .insert(&txn)
        .await?;
        txn.commit().await?;
        inv.state = InvitationState::Cancelled;
        inv.close_time = Some(now);
        Ok(pb::CancelInvitationResponse {
            invitation: Some(invitation_pb(&inv, now)),
        })
    }

    pub(super) async fn do_accept_invitation(
        &self,
        request: tonic::Request<pb::AcceptInvitationRequest>,
    ) -> Result<pb::AcceptInvitationResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let req = request.into_inner();
        if req.token.is_empty() {
            return Err(Error::invalid_field("token", "required"));
        }
        // Tokens are `tni_` and 43 characters; anything much longer is not
        // one (and is not worth hashing).
        if req.token.len() > 100 {
            return Err(AccountError::InvitationNotFound.into());
        }
        let hash = SecretToken::from_client(req.token.clone()).hash();
        let inv = store::invitation_by_token(&self.db, &hash)
            .await?
            .ok_or(AccountError::InvitationNotFound)?;
        // The lookup is by hash of a 256-bit token; compare once more in
        // constant time for good measure.
        if !tenancy_runtime::secret::constant_time_eq(inv.token_hash.as_bytes(), hash.as_bytes()) {
            return Err(AccountError::InvitationNotFound.into());
        }
        let now = self.now();
        match inv.effective_state(now) {
            InvitationState::Accepted => return Err(AccountError::InvitationUsed.into()),
            InvitationState::Cancelled => return Err(AccountError::InvitationCancelled.into()),
            InvitationState::Expired => return Err(AccountError::InvitationExpired.into()),
            InvitationState::Pending => {}
        }
        // The invitee's user, created at invitation time (for a member
        // who was added, the invitation names the member's stand-in id).
        let user_id = match &inv.user_id {
            Some(id) if inv.for_existing_member => {
                let id = UserId::trusted(id.as_str());
                store::member_by_public_id(&self.db, &inv.account_id, &id)
                    .await?
                    .map(|m| m.user_id)
            }
            Some(id) => Some(UserId::trusted(id.as_str())),
            None => None,
        };
        let user = match user_id {
            Some(id) => self
                .peers
                .users(std::slice::from_ref(&id))
                .await?
                .remove(&id),
            None => None,
        };
        let user = match user {
            Some(u) => u,
            None => self.peers.ensure_user(&inv.email, "").await?.0,
        };
        let user_created = !user.password_set;
        if user_created {
            let mut v = Violations::default();
            let name = if user.name.is_empty() {
                v.take("name", validate::text(&req.name, 1, 100))
            } else {
                Some(String::new())
            };
            v.check(!req.password.is_empty(), "password", "required");
            v.finish()?;
            self.peers
                .set_initial_password(user.id.as_str(), &req.password, &name.unwrap_or_default())
                .await?;
        }
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &inv.account_id).await?;
        if !store::claim_invitation(&txn, &inv.id, &hash, now, &user.id).await? {
            return Err(AccountError::InvitationUsed.into());
        }
        let account = AccountRow::load(&txn, &inv.account_id)
            .await?
            .ok_or(AccountError::InvitationNotFound)?;
        let existing = store::member(&txn, &inv.account_id, &user.id).await?;
        let row = match existing {
            Some(mut m) if m.status != MemberStatus::Revoked => {
                if !(inv.for_existing_member && m.status == MemberStatus::Active) {
                    return Err(AccountError::AlreadyMember.into());
                }
                m.portal_access = true;
                m.password_pending = false;
                m.update_time = now;
                // Their own action: from now on the API shows them as
                // they are.
                m.accepted = true;
                m.name_key = name_key(&user, &req.name);
                m.email = inv.email.clone();
                m.update(&txn).await?;
                m
            }
            _ => {
                let mut scope = inv.scope.clone();
                let ids: Vec<String> = scope
                    .selected
                    .iter()
                    .chain(scope.resources.iter().map(|(id, _)| id))
                    .cloned()
                    .collect();
                let live = store::existing_services(&txn, &inv.account_id, &ids).await?;
                scope.selected.retain(|id| live.contains(id));
                scope.resources.retain(|(id, _)| live.contains(id));
                let m = MemberRow {
                    account_id: inv.account_id.clone(),
                    user_id: user.id.clone(),
                    role: inv.role,
                    status: MemberStatus::Active,
                    portal_access: true,
                    password_pending: false,
                    service_access: scope.service_access,
                    join_time: now,
                    update_time: now,
                    name_key: name_key(&user, &req.name),
                    email: inv.email.clone(),
                    mfa_deadline: join_deadline(&account, now),
                    accepted: true,
                    alias_id: user.id.clone(),
                    added_name: String::new(),
                    api: false,
                    description: String::new(),
                    source_allowlist: String::new(),
                };
                m.upsert(&txn).await?;
                store::replace_grants(&txn, &m.account_id, &m.user_id, &scope).await?;
                m
            }
        };
        let mut audit = self.audit(
            &principal,
            &inv.account_id,
            "invitation.accept",
            ("invitation", &inv.id),
            None,
            Some(crate::app::policy::member_json(&row)),
        );
        audit.actor_kind = pb::ActorKind::User as i32;
        audit.actor_id = user.id.to_string();
        audit.actor_display_name = inv.email.clone();
        audit.insert(&txn).await?;
        store::append_policy(&txn, now, vec![membership_entry(&row)]).await?;
        txn.commit().await?;
        self.policy_committed(&inv.account_id);
        Ok(pb::AcceptInvitationResponse {
            account_id: inv.account_id.to_string(),
            user_id: user.id.to_string(),
            role: row.role.code(),
            user_created,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
