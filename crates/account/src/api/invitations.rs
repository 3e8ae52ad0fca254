//! Invitations: invite, list, resend, cancel, accept.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::Error;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{
    InvitationId, UserId, decode_page_token_for, encode_page_token, page_size,
};

use super::members::ScopeFields;
use super::{Api, Caller, fingerprint, scope_pb, ts};
use crate::app::invitations as app;
use crate::domain::{AccountError, InvitationState, Role, Scope, ServiceAccess, validate};
use crate::store::{self, InvitationRow, MemberRow};

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
        id: r.id.to_string(),
        account_id: r.account_id.to_string(),
        email: r.email.clone(),
        role: r.role.code(),
        access_scope: Some(scope_pb(&scope)),
        state: state.code(),
        create_time: Some(ts(r.create_time)),
        expire_time: Some(ts(r.expire_time)),
        invited_by_user_id: r.invited_by.to_string(),
        send_time: Some(ts(r.send_time)),
        send_count: r.send_count,
        close_time: closed,
        user_id: if state == InvitationState::Accepted || r.for_existing_member {
            r.user_id
                .as_ref()
                .map(UserId::to_string)
                .unwrap_or_default()
        } else {
            String::new()
        },
    }
}

#[derive(Serialize, Deserialize)]
struct Token {
    f: String,
    t: i64,
    id: String,
}

impl Api {
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
        let scope = self
            .parse_scope(
                &caller.account_id,
                &input,
                &ScopeFields::ALL,
                Scope::default(),
            )
            .await?;
        let inv = app::invite_member(self, &caller.actor(), &email, role, scope).await?;
        Ok(pb::InviteMemberResponse {
            invitation: Some(invitation_pb(&inv, self.now())),
        })
    }

    /// An invitation for a member added without a password, sent when an
    /// owner gives them portal access.
    pub(super) async fn invite_existing_member(
        &self,
        caller: &Caller,
        member: &MemberRow,
    ) -> Result<pb::Invitation, Error> {
        let inv = app::invite_existing_member(self, &caller.actor(), member).await?;
        Ok(invitation_pb(&inv, self.now()))
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
                id: l.id.to_string(),
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
        let id = InvitationId::parse("invitation_id", &request.get_ref().invitation_id)?;
        let inv = app::invitation(self, &id, Some(&caller.account_id)).await?;
        let inv = app::resend_invitation(self, inv, &caller.principal, &caller.user_id).await?;
        Ok(pb::ResendInvitationResponse {
            invitation: Some(invitation_pb(&inv, self.now())),
        })
    }

    /// ResendInvitationAsOperator: the same as the owner's ResendInvitation
    /// (limits, audit), for any account's invitation; the email names the
    /// member who invited.
    pub(super) async fn do_operator_resend_invitation(
        &self,
        request: tonic::Request<pb::ResendInvitationAsOperatorRequest>,
    ) -> Result<pb::ResendInvitationResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let id = InvitationId::parse("invitation_id", &request.get_ref().invitation_id)?;
        let inv = app::invitation(self, &id, None).await?;
        let inviter = inv.invited_by.clone();
        let inv = app::resend_invitation(self, inv, &principal, &inviter).await?;
        Ok(pb::ResendInvitationResponse {
            invitation: Some(invitation_pb(&inv, self.now())),
        })
    }

    pub(super) async fn do_cancel_invitation(
        &self,
        request: tonic::Request<pb::CancelInvitationRequest>,
    ) -> Result<pb::CancelInvitationResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let id = InvitationId::parse("invitation_id", &request.get_ref().invitation_id)?;
        let inv = app::invitation(self, &id, Some(&caller.account_id)).await?;
        let inv = app::cancel_invitation(self, &caller.actor(), inv).await?;
        Ok(pb::CancelInvitationResponse {
            invitation: Some(invitation_pb(&inv, self.now())),
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
        let accepted =
            app::accept_invitation(self, &principal, req.token, &req.name, &req.password).await?;
        Ok(pb::AcceptInvitationResponse {
            account_id: accepted.account_id.to_string(),
            user_id: accepted.user_id.to_string(),
            role: accepted.role.code(),
            user_created: accepted.user_created,
        })
    }
}
