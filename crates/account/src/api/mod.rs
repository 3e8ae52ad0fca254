//! The gRPC surface of the account service: proto ⇄ domain, validation at
//! the edge, one `app` use case (or `store` read) per method, rendering.
//! Methods of a topic live in one submodule.

use tenancy_proto::account as pb;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Principal, Reason, Timestamp};

use crate::app::App;
pub(crate) use crate::app::fingerprint;
use crate::app::members::Actor;
pub(crate) use crate::app::policy::{allowlist_of, membership_state, settings_pb};
use crate::domain::members::check_caller;
use crate::domain::{AccountError, Role, Scope, validate};
use crate::peers::UserInfo;
use crate::store::{self, AccountRow, MemberRow};

mod accounts;
mod audit;
mod internal;
mod invitations;
mod members;
mod security;
mod services;
mod watch;

/// The handlers over the use cases' state; cheap to clone. Handlers reach
/// the [`App`] fields (`db`, `clock`, …) through `Deref`.
#[derive(Clone)]
pub(crate) struct Api {
    app: App,
    /// Ends WatchPolicies streams when the server stops.
    shutdown: tenancy_runtime::shutdown::Shutdown,
}

impl std::ops::Deref for Api {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// The caller of an account method, checked against live membership.
pub(crate) struct Caller {
    principal: Principal,
    user_id: UserId,
    account_id: AccountId,
    member: MemberRow,
}

impl Api {
    pub(crate) fn new(app: App, shutdown: tenancy_runtime::shutdown::Shutdown) -> Self {
        Self { app, shutdown }
    }

    /// Checks that the principal is an ACTIVE member with portal access and
    /// at least `min_role`, from live membership (not only the token).
    async fn caller<T>(
        &self,
        request: &tonic::Request<T>,
        min_role: Role,
    ) -> Result<Caller, Error> {
        let principal = tenancy_runtime::server::principal(request)?.clone();
        let user_id = UserId::trusted(principal.user()?);
        let account_id = AccountId::trusted(principal.account()?);
        let member = store::member(&self.db, &account_id, &user_id).await?;
        check_caller(member.as_ref().map(MemberRow::caller_facts), min_role)?;
        let member = member.ok_or(AccountError::NotAMember)?;
        Ok(Caller {
            principal,
            user_id,
            account_id,
            member,
        })
    }
}

impl Caller {
    /// The caller as the use cases take it.
    fn actor(&self) -> Actor<'_> {
        Actor {
            principal: &self.principal,
            user_id: self.user_id.clone(),
            account_id: self.account_id.clone(),
        }
    }
}

impl Api {
    /// A member as the API shows it. A member who has not accepted (added
    /// with AddMember) shows only what the adding owner typed: their
    /// stand-in id, the name and email typed, no login or 2FA facts (so
    /// no 2FA deadline either, whose presence would tell).
    fn member_pb(
        &self,
        row: &MemberRow,
        scope: &Scope,
        user: Option<&UserInfo>,
        account: Option<&AccountRow>,
    ) -> pb::Member {
        // An API member's name is the account's (no profile to show).
        let user = user.filter(|_| row.accepted && !row.api);
        let enforce = account.is_some_and(|a| a.enforce_mfa);
        let has_mfa = user.is_some_and(|u| u.totp_enabled);
        pb::Member {
            user_id: row.public_id().to_string(),
            account_id: row.account_id.to_string(),
            name: match user {
                Some(u) => u.name.clone(),
                None if !row.accepted || row.api => row.added_name.clone(),
                None => String::new(),
            },
            email: user
                .map(|u| u.email.clone())
                .unwrap_or_else(|| row.email.clone()),
            last_login_time: user.and_then(|u| u.last_login_time).map(ts),
            totp_enabled: has_mfa,
            role: row.role.code(),
            status: row.status.code(),
            access_scope: Some(scope_pb(scope)),
            join_time: Some(ts(row.join_time)),
            mfa_deadline: if enforce && !has_mfa && row.accepted && !row.api {
                row.mfa_deadline.map(ts)
            } else {
                None
            },
            update_time: Some(ts(row.update_time)),
            kind: if row.api {
                pb::MemberKind::Api
            } else {
                pb::MemberKind::Person
            } as i32,
            description: row.description.clone(),
            source_allowlist: row.source_allowlist(),
        }
    }

    /// Loads and renders one member with profile and scope.
    async fn render_member(&self, row: &MemberRow) -> Result<pb::Member, Error> {
        let scope = store::scope(&self.db, row).await?;
        let users = if row.accepted {
            self.users_or_empty(std::slice::from_ref(&row.user_id))
                .await
        } else {
            Default::default()
        };
        let account = AccountRow::load(&self.db, &row.account_id).await?;
        Ok(self.member_pb(row, &scope, users.get(&row.user_id), account.as_ref()))
    }
}

/// A timestamp from Unix milliseconds.
pub(crate) fn ts(ms: i64) -> prost_types::Timestamp {
    Timestamp(ms).to_proto()
}

/// Unix milliseconds of a timestamp.
pub(crate) fn ms(t: &prost_types::Timestamp) -> i64 {
    Timestamp::from_proto(t).millis()
}

/// A scope as the API shows it.
pub(crate) fn scope_pb(scope: &Scope) -> pb::AccessScope {
    pb::AccessScope {
        portal_access: scope.portal_access,
        service_access: scope.service_access.code(),
        selected_service_ids: scope.selected.iter().map(ToString::to_string).collect(),
        resource_grants: scope
            .resources
            .iter()
            .map(|(id, l)| pb::ResourceGrant {
                service_id: id.to_string(),
                level: l.code(),
            })
            .collect(),
        tag_grants: scope
            .tags
            .iter()
            .map(|(t, l)| pb::TagGrant {
                tag: t.clone(),
                level: l.code(),
            })
            .collect(),
    }
}

/// The stored allowlist, parsed.
pub(crate) fn allowlist_nets(account: &AccountRow) -> Vec<ipnet::IpNet> {
    allowlist_of(account)
        .iter()
        .filter_map(|e| validate::cidr(e).ok())
        .collect()
}

/// A JSON object as a protobuf Struct.
pub(crate) fn to_struct(text: &str) -> Option<prost_types::Struct> {
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Object(map) => Some(prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }),
        _ => None,
    }
}

fn to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf Struct as JSON text.
pub(crate) fn from_struct(s: &prost_types::Struct) -> String {
    fn value(v: &prost_types::Value) -> serde_json::Value {
        use prost_types::value::Kind;
        match &v.kind {
            None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
            Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
            Some(Kind::NumberValue(n)) => serde_json::json!(n),
            Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
            Some(Kind::ListValue(l)) => {
                serde_json::Value::Array(l.values.iter().map(value).collect())
            }
            Some(Kind::StructValue(s)) => object(s),
        }
    }
    fn object(s: &prost_types::Struct) -> serde_json::Value {
        serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect(),
        )
    }
    object(s).to_string()
}

/// The most entries of a repeated field every one of this service's limits
/// is (documented in the proto comments, issue 21 §6).
pub(crate) mod limits {
    /// `AccessScope.selected_service_ids`.
    pub(crate) const SELECTED_SERVICES: usize = 1000;
    /// `AccessScope.resource_grants`.
    pub(crate) const RESOURCE_GRANTS: usize = 1000;
    /// `AccessScope.tag_grants`.
    pub(crate) const TAG_GRANTS: usize = 100;
    /// `Service.tags`.
    pub(crate) const SERVICE_TAGS: usize = 50;
    /// Tag filters of ListServices.
    pub(crate) const TAG_FILTERS: usize = 10;
    /// Enum filters (ListMembers.statuses, ListInvitations.states).
    pub(crate) const ENUM_FILTERS: usize = 10;
    /// `update_mask.paths`.
    pub(crate) const MASK_PATHS: usize = 20;
    /// `PostalAddress.lines`.
    pub(crate) const ADDRESS_LINES: usize = 3;
    /// BatchCheckAccess `service_ids`.
    pub(crate) const CHECKED_SERVICES: usize = 500;
    /// GetDefaultAccount `preferred_account_ids`.
    pub(crate) const PREFERRED_ACCOUNTS: usize = 10;
}

pub(crate) use tenancy_runtime::error::at_most;

/// The paths of a field mask; UPDATE_MASK_INVALID when empty or not in
/// `allowed`, LIST_TOO_LONG beyond [`limits::MASK_PATHS`].
pub(crate) fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<String>, Error> {
    at_most(
        "update_mask.paths",
        mask.map_or(0, |m| m.paths.len()),
        limits::MASK_PATHS,
    )?;
    let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
    let bad = |message: String| {
        Error::new(Reason::UpdateMaskInvalid, message.clone()).with_field("update_mask", message)
    };
    if paths.is_empty() {
        return Err(bad("update_mask must name at least one field".to_owned()));
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            return Err(bad(format!("unknown or read-only path {p:?}")));
        }
    }
    Ok(paths)
}

/// An PAGE_TOKEN_INVALID error.
pub(crate) fn bad_page_token() -> Error {
    Error::new(
        Reason::PageTokenInvalid,
        "page_token is not a token this list returned for these filters",
    )
    .with_field(
        "page_token",
        "not a token this list returned for these filters",
    )
}

type R<T> = Result<tonic::Response<T>, tonic::Status>;

fn ok<T>(value: T) -> R<T> {
    Ok(tonic::Response::new(value))
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for Api {
    async fn create_account(
        &self,
        r: tonic::Request<pb::CreateAccountRequest>,
    ) -> R<pb::CreateAccountResponse> {
        ok(self.do_create_account(r).await?)
    }
    async fn list_my_accounts(
        &self,
        r: tonic::Request<pb::ListMyAccountsRequest>,
    ) -> R<pb::ListMyAccountsResponse> {
        ok(self.do_list_my_accounts(r).await?)
    }
    async fn get_account(
        &self,
        r: tonic::Request<pb::GetAccountRequest>,
    ) -> R<pb::GetAccountResponse> {
        ok(self.do_get_account(r).await?)
    }
    async fn update_account(
        &self,
        r: tonic::Request<pb::UpdateAccountRequest>,
    ) -> R<pb::UpdateAccountResponse> {
        ok(self.do_update_account(r).await?)
    }
    async fn list_members(
        &self,
        r: tonic::Request<pb::ListMembersRequest>,
    ) -> R<pb::ListMembersResponse> {
        ok(self.do_list_members(r).await?)
    }
    async fn get_member(
        &self,
        r: tonic::Request<pb::GetMemberRequest>,
    ) -> R<pb::GetMemberResponse> {
        ok(self.do_get_member(r).await?)
    }
    async fn invite_member(
        &self,
        r: tonic::Request<pb::InviteMemberRequest>,
    ) -> R<pb::InviteMemberResponse> {
        ok(self.do_invite_member(r).await?)
    }
    async fn list_invitations(
        &self,
        r: tonic::Request<pb::ListInvitationsRequest>,
    ) -> R<pb::ListInvitationsResponse> {
        ok(self.do_list_invitations(r).await?)
    }
    async fn resend_invitation(
        &self,
        r: tonic::Request<pb::ResendInvitationRequest>,
    ) -> R<pb::ResendInvitationResponse> {
        ok(self.do_resend_invitation(r).await?)
    }
    async fn cancel_invitation(
        &self,
        r: tonic::Request<pb::CancelInvitationRequest>,
    ) -> R<pb::CancelInvitationResponse> {
        ok(self.do_cancel_invitation(r).await?)
    }
    async fn accept_invitation(
        &self,
        r: tonic::Request<pb::AcceptInvitationRequest>,
    ) -> R<pb::AcceptInvitationResponse> {
        ok(self.do_accept_invitation(r).await?)
    }
    async fn add_member(
        &self,
        r: tonic::Request<pb::AddMemberRequest>,
    ) -> R<pb::AddMemberResponse> {
        ok(self.do_add_member(r).await?)
    }
    async fn create_api_member(
        &self,
        r: tonic::Request<pb::CreateApiMemberRequest>,
    ) -> R<pb::CreateApiMemberResponse> {
        ok(self.do_create_api_member(r).await?)
    }
    async fn update_api_member(
        &self,
        r: tonic::Request<pb::UpdateApiMemberRequest>,
    ) -> R<pb::UpdateApiMemberResponse> {
        ok(self.do_update_api_member(r).await?)
    }
    async fn change_member_role(
        &self,
        r: tonic::Request<pb::ChangeMemberRoleRequest>,
    ) -> R<pb::ChangeMemberRoleResponse> {
        ok(self.do_change_member_role(r).await?)
    }
    async fn suspend_member(
        &self,
        r: tonic::Request<pb::SuspendMemberRequest>,
    ) -> R<pb::SuspendMemberResponse> {
        ok(self.do_suspend_member(r).await?)
    }
    async fn reactivate_member(
        &self,
        r: tonic::Request<pb::ReactivateMemberRequest>,
    ) -> R<pb::ReactivateMemberResponse> {
        ok(self.do_reactivate_member(r).await?)
    }
    async fn revoke_member(
        &self,
        r: tonic::Request<pb::RevokeMemberRequest>,
    ) -> R<pb::RevokeMemberResponse> {
        ok(self.do_revoke_member(r).await?)
    }
    async fn leave_account(
        &self,
        r: tonic::Request<pb::LeaveAccountRequest>,
    ) -> R<pb::LeaveAccountResponse> {
        ok(self.do_leave_account(r).await?)
    }
    async fn set_member_access(
        &self,
        r: tonic::Request<pb::SetMemberAccessRequest>,
    ) -> R<pb::SetMemberAccessResponse> {
        ok(self.do_set_member_access(r).await?)
    }
    async fn get_security_settings(
        &self,
        r: tonic::Request<pb::GetSecuritySettingsRequest>,
    ) -> R<pb::GetSecuritySettingsResponse> {
        ok(self.do_get_security_settings(r).await?)
    }
    async fn update_security_settings(
        &self,
        r: tonic::Request<pb::UpdateSecuritySettingsRequest>,
    ) -> R<pb::UpdateSecuritySettingsResponse> {
        ok(self.do_update_security_settings(r).await?)
    }
    async fn grant_support_access(
        &self,
        r: tonic::Request<pb::GrantSupportAccessRequest>,
    ) -> R<pb::GrantSupportAccessResponse> {
        ok(self.do_grant_support_access(r).await?)
    }
    async fn revoke_support_access(
        &self,
        r: tonic::Request<pb::RevokeSupportAccessRequest>,
    ) -> R<pb::RevokeSupportAccessResponse> {
        ok(self.do_revoke_support_access(r).await?)
    }
    async fn get_support_access(
        &self,
        r: tonic::Request<pb::GetSupportAccessRequest>,
    ) -> R<pb::GetSupportAccessResponse> {
        ok(self.do_get_support_access(r).await?)
    }
    async fn list_services(
        &self,
        r: tonic::Request<pb::ListServicesRequest>,
    ) -> R<pb::ListServicesResponse> {
        ok(self.do_list_services(r).await?)
    }
    async fn get_service(
        &self,
        r: tonic::Request<pb::GetServiceRequest>,
    ) -> R<pb::GetServiceResponse> {
        ok(self.do_get_service(r).await?)
    }
    async fn list_audit_events(
        &self,
        r: tonic::Request<pb::ListAuditEventsRequest>,
    ) -> R<pb::ListAuditEventsResponse> {
        ok(self.do_list_audit_events(r).await?)
    }
}

#[tonic::async_trait]
impl pb::account_internal_service_server::AccountInternalService for Api {
    async fn register_service(
        &self,
        r: tonic::Request<pb::RegisterServiceRequest>,
    ) -> R<pb::RegisterServiceResponse> {
        ok(self.do_register_service(r).await?)
    }
    async fn update_service(
        &self,
        r: tonic::Request<pb::UpdateServiceRequest>,
    ) -> R<pb::UpdateServiceResponse> {
        ok(self.do_update_service(r).await?)
    }
    async fn delete_service(
        &self,
        r: tonic::Request<pb::DeleteServiceRequest>,
    ) -> R<pb::DeleteServiceResponse> {
        ok(self.do_delete_service(r).await?)
    }
    async fn check_access(
        &self,
        r: tonic::Request<pb::CheckAccessRequest>,
    ) -> R<pb::CheckAccessResponse> {
        ok(self.do_check_access(r.into_inner()).await?)
    }
    async fn batch_check_access(
        &self,
        r: tonic::Request<pb::BatchCheckAccessRequest>,
    ) -> R<pb::BatchCheckAccessResponse> {
        ok(self.do_batch_check_access(r.into_inner()).await?)
    }
    async fn get_principal_state(
        &self,
        r: tonic::Request<pb::GetPrincipalStateRequest>,
    ) -> R<pb::GetPrincipalStateResponse> {
        ok(self.do_get_principal_state(r.into_inner()).await?)
    }
    async fn resend_invitation_as_operator(
        &self,
        r: tonic::Request<pb::ResendInvitationAsOperatorRequest>,
    ) -> R<pb::ResendInvitationAsOperatorResponse> {
        let invitation = self.do_operator_resend_invitation(r).await?.invitation;
        ok(pb::ResendInvitationAsOperatorResponse { invitation })
    }
    async fn list_user_memberships(
        &self,
        r: tonic::Request<pb::ListUserMembershipsRequest>,
    ) -> R<pb::ListUserMembershipsResponse> {
        ok(self.do_list_user_memberships(r.into_inner()).await?)
    }
    async fn get_default_account(
        &self,
        r: tonic::Request<pb::GetDefaultAccountRequest>,
    ) -> R<pb::GetDefaultAccountResponse> {
        ok(self.do_get_default_account(r.into_inner()).await?)
    }
    async fn watch_policies(
        &self,
        r: tonic::Request<pb::WatchPoliciesRequest>,
    ) -> R<watch::PolicyStream> {
        let stream = self.do_watch_policies(r.into_inner()).await?;
        ok(tenancy_runtime::shutdown::until_shutdown(
            stream,
            self.shutdown.clone(),
        ))
    }
    async fn check_support_access(
        &self,
        r: tonic::Request<pb::CheckSupportAccessRequest>,
    ) -> R<pb::CheckSupportAccessResponse> {
        ok(self.do_check_support_access(r.into_inner()).await?)
    }
    async fn list_active_support_access_grants(
        &self,
        r: tonic::Request<pb::ListActiveSupportAccessGrantsRequest>,
    ) -> R<pb::ListActiveSupportAccessGrantsResponse> {
        ok(self
            .do_list_active_support_access_grants(r.into_inner())
            .await?)
    }
    async fn record_audit_event(
        &self,
        r: tonic::Request<pb::RecordAuditEventRequest>,
    ) -> R<pb::RecordAuditEventResponse> {
        ok(self.do_record_audit_event(r).await?)
    }
}
