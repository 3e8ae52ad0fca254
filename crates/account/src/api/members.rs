//! Members: list, get, add, change role, suspend, reactivate, revoke,
//! leave, set access.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{
    AccountId, ServiceId, UserId, decode_page_token_for, encode_page_token, page_size,
};
use tenancy_runtime::{Error, Reason};

use super::{Api, at_most, fingerprint, limits, mask_paths};
use crate::app::members::{self as app, Actor, ApiMemberChange, ApiMemberFields};
use crate::domain::members::MemberChange;
use crate::domain::{AccountError, Level, MemberStatus, Role, Scope, ServiceAccess, validate};
use crate::store::{self, AccountRow, MemberKey, MemberOrder, MemberQuery, MemberRow};

/// A role from the request: OWNER or MANAGER.
pub(crate) fn parse_role(value: i32, field: &str) -> Result<Role, Error> {
    Role::from_code(value).ok_or_else(|| Error::invalid_field(field, "must be OWNER or MANAGER"))
}

/// A level from the request: VIEW or MANAGE.
fn parse_level(value: i32, field: &str, v: &mut Violations) -> Level {
    Level::grantable(value).unwrap_or_else(|| {
        v.add(field, "VIEW or MANAGE is required");
        Level::None
    })
}

/// Which scope fields to read from the request.
pub(crate) struct ScopeFields {
    pub(crate) service_access: bool,
    pub(crate) selected: bool,
    pub(crate) resources: bool,
    pub(crate) tags: bool,
}

impl ScopeFields {
    pub(crate) const ALL: Self = Self {
        service_access: true,
        selected: true,
        resources: true,
        tags: true,
    };
}

impl Api {
    /// Validates `input` over `base`: limits, uniqueness, and that every
    /// service id belongs to the account (SERVICE_NOT_FOUND).
    pub(crate) async fn parse_scope(
        &self,
        account_id: &AccountId,
        input: &pb::AccessScope,
        fields: &ScopeFields,
        base: Scope,
    ) -> Result<Scope, Error> {
        let mut scope = base;
        let mut v = Violations::default();
        let p = "access_scope";
        if fields.service_access {
            if let Some(mode) = ServiceAccess::from_code(input.service_access) {
                scope.service_access = mode;
            } else {
                v.add(
                    format!("{p}.service_access"),
                    "NONE, ALL or SELECTED is required",
                );
            }
        }
        // The limits first: an oversized list is refused before any entry
        // is looked at (the duplicate checks below are quadratic).
        at_most(
            &format!("{p}.selected_service_ids"),
            input.selected_service_ids.len(),
            limits::SELECTED_SERVICES,
        )?;
        at_most(
            &format!("{p}.resource_grants"),
            input.resource_grants.len(),
            limits::RESOURCE_GRANTS,
        )?;
        at_most(
            &format!("{p}.tag_grants"),
            input.tag_grants.len(),
            limits::TAG_GRANTS,
        )?;
        let mut ids_to_check: Vec<(String, ServiceId)> = Vec::new();
        if fields.selected {
            let mut out: Vec<ServiceId> = Vec::new();
            for (k, id) in input.selected_service_ids.iter().enumerate() {
                let field = format!("{p}.selected_service_ids[{k}]");
                match ServiceId::parse(&field, id) {
                    Ok(id) if !out.contains(&id) => {
                        ids_to_check.push((field, id.clone()));
                        out.push(id);
                    }
                    Ok(_) => v.add(field, "duplicate"),
                    Err(_) => v.add(field, "must be a UUID"),
                }
            }
            scope.selected = out;
        }
        if scope.service_access != ServiceAccess::Selected && !scope.selected.is_empty() {
            v.add(
                format!("{p}.selected_service_ids"),
                "must be empty unless service_access is SELECTED",
            );
        }
        if fields.resources {
            let mut out: Vec<(ServiceId, Level)> = Vec::new();
            for (k, g) in input.resource_grants.iter().enumerate() {
                let field = format!("{p}.resource_grants[{k}]");
                let level = parse_level(g.level, &format!("{field}.level"), &mut v);
                match ServiceId::parse(&field, &g.service_id) {
                    Ok(id) if out.iter().any(|(x, _)| *x == id) => {
                        v.add(format!("{field}.service_id"), "one grant per service")
                    }
                    Ok(id) => {
                        ids_to_check.push((format!("{field}.service_id"), id.clone()));
                        out.push((id, level));
                    }
                    Err(_) => v.add(format!("{field}.service_id"), "must be a UUID"),
                }
            }
            scope.resources = out;
        }
        if fields.tags {
            let mut out: Vec<(String, Level)> = Vec::new();
            for (k, g) in input.tag_grants.iter().enumerate() {
                let field = format!("{p}.tag_grants[{k}]");
                let level = parse_level(g.level, &format!("{field}.level"), &mut v);
                match validate::tag(&g.tag) {
                    Ok(t) if out.iter().any(|(x, _)| *x == t) => {
                        v.add(format!("{field}.tag"), "one grant per tag")
                    }
                    Ok(t) => out.push((t, level)),
                    Err(e) => v.add(format!("{field}.tag"), e),
                }
            }
            scope.tags = out;
        }
        v.finish()?;
        let ids: Vec<ServiceId> = ids_to_check.iter().map(|(_, id)| id.clone()).collect();
        let existing = store::existing_services(&self.db, account_id, &ids).await?;
        // The first few unknown ids are named: a thousand field violations
        // would not fit in the response's headers.
        const NAMED: usize = 20;
        let unknown: Vec<&String> = ids_to_check
            .iter()
            .filter(|(_, id)| !existing.contains(id))
            .map(|(field, _)| field)
            .collect();
        if !unknown.is_empty() {
            let mut missing = Error::new(Reason::ServiceIdUnknown, "unknown service ids");
            for field in unknown.into_iter().take(NAMED) {
                missing = missing.with_field(field.clone(), "no such service in the account");
            }
            return Err(missing);
        }
        Ok(scope)
    }

    pub(super) async fn do_list_members(
        &self,
        request: tonic::Request<pb::ListMembersRequest>,
    ) -> Result<pb::ListMembersResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let req = request.into_inner();
        list_members(self, &caller.account_id, req).await
    }

    pub(super) async fn do_get_member(
        &self,
        request: tonic::Request<pb::GetMemberRequest>,
    ) -> Result<pb::GetMemberResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        let row = store::member_by_public_id(&self.db, &caller.account_id, &user)
            .await?
            .ok_or(AccountError::MemberNotFound)?;
        Ok(pb::GetMemberResponse {
            member: Some(self.render_member(&row).await?),
        })
    }

    /// A member change by the principal of `request` on `target`; the
    /// member as the API shows it afterwards.
    async fn change_member<T>(
        &self,
        request: &tonic::Request<T>,
        target: UserId,
        change: MemberChange,
    ) -> Result<pb::Member, Error> {
        let principal = tenancy_runtime::server::principal(request)?;
        let actor = Actor::of(principal)?;
        let row = app::change_member(self, &actor, &target, change).await?;
        self.render_member(&row).await
    }

    pub(super) async fn do_change_member_role(
        &self,
        request: tonic::Request<pb::ChangeMemberRoleRequest>,
    ) -> Result<pb::ChangeMemberRoleResponse, Error> {
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        let role = parse_role(request.get_ref().role, "role")?;
        let member = self
            .change_member(&request, user, MemberChange::Role(role))
            .await?;
        Ok(pb::ChangeMemberRoleResponse {
            member: Some(member),
        })
    }

    pub(super) async fn do_suspend_member(
        &self,
        request: tonic::Request<pb::SuspendMemberRequest>,
    ) -> Result<pb::SuspendMemberResponse, Error> {
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        let member = self
            .change_member(&request, user, MemberChange::Suspend)
            .await?;
        Ok(pb::SuspendMemberResponse {
            member: Some(member),
        })
    }

    pub(super) async fn do_reactivate_member(
        &self,
        request: tonic::Request<pb::ReactivateMemberRequest>,
    ) -> Result<pb::ReactivateMemberResponse, Error> {
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        let member = self
            .change_member(&request, user, MemberChange::Reactivate)
            .await?;
        Ok(pb::ReactivateMemberResponse {
            member: Some(member),
        })
    }

    pub(super) async fn do_revoke_member(
        &self,
        request: tonic::Request<pb::RevokeMemberRequest>,
    ) -> Result<pb::RevokeMemberResponse, Error> {
        let user = UserId::parse("user_id", &request.get_ref().user_id)?;
        let member = self
            .change_member(&request, user, MemberChange::Revoke)
            .await?;
        Ok(pb::RevokeMemberResponse {
            member: Some(member),
        })
    }

    pub(super) async fn do_leave_account(
        &self,
        request: tonic::Request<pb::LeaveAccountRequest>,
    ) -> Result<pb::LeaveAccountResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?;
        let actor = Actor::of(principal)?;
        let me = actor.user_id.clone();
        app::change_member(self, &actor, &me, MemberChange::Leave).await?;
        Ok(pb::LeaveAccountResponse {})
    }

    pub(super) async fn do_set_member_access(
        &self,
        request: tonic::Request<pb::SetMemberAccessRequest>,
    ) -> Result<pb::SetMemberAccessResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let user = UserId::parse("user_id", &req.user_id)?;
        let paths = mask_paths(
            req.update_mask.as_ref(),
            &[
                "*",
                "portal_access",
                "service_access",
                "selected_service_ids",
                "resource_grants",
                "tag_grants",
            ],
        )?;
        let has = |p: &str| paths.iter().any(|x| x == p || x == "*");
        let input = req.access_scope.unwrap_or_default();
        let current = store::member_by_public_id(&self.db, &caller.account_id, &user)
            .await?
            .ok_or(AccountError::MemberNotFound)?;
        if current.status == MemberStatus::Revoked {
            return Err(AccountError::MemberRevoked.into());
        }
        let base = store::scope(&self.db, &current).await?;
        let fields = ScopeFields {
            service_access: has("service_access"),
            selected: has("selected_service_ids"),
            resources: has("resource_grants"),
            tags: has("tag_grants"),
        };
        let mut wanted = self
            .parse_scope(&caller.account_id, &input, &fields, base)
            .await?;
        if has("portal_access") {
            wanted.portal_access = input.portal_access;
        }
        // Giving portal access to someone who has not accepted (added with
        // AddMember) goes through an invitation: they get access when they
        // accept it, whether or not they have a password (which the reply
        // must not tell).
        let needs_invitation = wanted.portal_access && !current.portal_access && !current.accepted;
        if needs_invitation {
            wanted.portal_access = false;
        }
        let actor = Actor::of(&caller.principal)?;
        let row = app::set_member_access(self, &actor, &user, wanted).await?;
        let invitation = if needs_invitation {
            Some(self.invite_existing_member(&caller, &row).await?)
        } else {
            None
        };
        Ok(pb::SetMemberAccessResponse {
            member: Some(self.render_member(&row).await?),
            invitation,
        })
    }

    pub(super) async fn do_add_member(
        &self,
        request: tonic::Request<pb::AddMemberRequest>,
    ) -> Result<pb::AddMemberResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let mut v = Violations::default();
        let email = v.take("email", validate::email(&req.email));
        let name = v.take("name", validate::text(&req.name, 1, 100));
        let role = Role::from_code(req.role);
        if role.is_none() {
            v.add("role", "must be OWNER or MANAGER");
        }
        v.finish()?;
        let (email, name) = (email.unwrap_or_default(), name.unwrap_or_default());
        let input = req.access_scope.unwrap_or_default();
        let scope = self
            .parse_scope(
                &caller.account_id,
                &input,
                &ScopeFields::ALL,
                Scope::default(),
            )
            .await?;
        let role = role.unwrap_or(Role::Manager);
        let new = app::add_member(self, &caller.actor(), &email, &name, role, scope).await?;
        let member = self.member_pb(&new.row, &new.scope, None, Some(&new.account));
        Ok(pb::AddMemberResponse {
            member: Some(member),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Token {
    f: String,
    k: serde_json::Value,
    u: String,
}

async fn list_members(
    api: &Api,
    account_id: &AccountId,
    req: pb::ListMembersRequest,
) -> Result<pb::ListMembersResponse, Error> {
    let size = page_size(req.page_size)?;
    at_most("statuses", req.statuses.len(), limits::ENUM_FILTERS)?;
    let mut statuses: Vec<i32> = req.statuses.clone();
    statuses.sort_unstable();
    statuses.dedup();
    let f = fingerprint(&(
        req.role,
        &statuses,
        req.portal_access,
        req.order_by,
        req.descending,
    ));
    let cursor = decode_page_token_for::<Token>(&req.page_token, |t| t.f == f)?;
    let order = match pb::MemberOrderBy::try_from(req.order_by).unwrap_or_default() {
        pb::MemberOrderBy::Name => MemberOrder::Name,
        pb::MemberOrderBy::Email => MemberOrder::Email,
        _ => MemberOrder::JoinTime,
    };
    let after = match &cursor {
        Some(c) => {
            let key = if order == MemberOrder::JoinTime {
                MemberKey::Time(c.k.as_i64().ok_or_else(super::bad_page_token)?)
            } else {
                MemberKey::Text(c.k.as_str().ok_or_else(super::bad_page_token)?.to_owned())
            };
            Some((key, c.u.as_str()))
        }
        None => None,
    };
    let query = MemberQuery {
        role: req.role,
        statuses: &statuses,
        portal_access: req.portal_access,
        order,
        descending: req.descending,
        after,
        limit: size + 1,
    };
    let rows = store::list_members(&api.db, account_id, &query).await?;
    let more = rows.len() as u64 > size;
    let rows: Vec<MemberRow> = rows
        .into_iter()
        .take(usize::try_from(size).unwrap_or(usize::MAX))
        .collect();
    let ids: Vec<UserId> = rows.iter().map(|r| r.user_id.clone()).collect();
    // Profiles only of members who accepted: the others show what the
    // adding owner typed.
    let accepted: Vec<UserId> = rows
        .iter()
        .filter(|r| r.accepted)
        .map(|r| r.user_id.clone())
        .collect();
    let account = AccountRow::load(&api.db, account_id).await?;
    let (users, scopes) = tokio::join!(
        api.users_or_empty(&accepted),
        store::scopes(&api.db, account_id, &ids)
    );
    let mut scopes = scopes?;
    let members = rows
        .iter()
        .map(|r| {
            let mut scope = scopes.remove(&r.user_id).unwrap_or_default();
            scope.portal_access = r.portal_access;
            scope.service_access = r.service_access;
            api.member_pb(r, &scope, users.get(&r.user_id), account.as_ref())
        })
        .collect();
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => {
            let k = match order {
                MemberOrder::Name => serde_json::json!(last.name_key),
                MemberOrder::Email => serde_json::json!(last.email),
                MemberOrder::JoinTime => serde_json::json!(last.join_time),
            };
            encode_page_token(&Token {
                f,
                k,
                u: last.alias_id.to_string(),
            })
        }
        _ => String::new(),
    };
    Ok(pb::ListMembersResponse {
        members,
        next_page_token,
    })
}

/// An API member's source allowlist from request field `field`, in the
/// stored form.
fn source_allowlist(field: &str, entries: &[String]) -> Result<String, Error> {
    use tenancy_runtime::allowlist;
    let nets = allowlist::parse_field(field, entries, allowlist::MAX_SOURCE_ALLOWLIST)?;
    Ok(allowlist::to_strings(&nets).join(" "))
}

impl Api {
    /// CreateApiMember: the user in identity first (a failed transaction
    /// after it leaves a user nobody can reach), then the membership.
    pub(super) async fn do_create_api_member(
        &self,
        request: tonic::Request<pb::CreateApiMemberRequest>,
    ) -> Result<pb::CreateApiMemberResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let mut v = Violations::default();
        let name = v.take("name", validate::text(&req.name, 1, 100));
        let description = v.take("description", validate::text(&req.description, 0, 500));
        v.finish()?;
        let (name, description) = (name.unwrap_or_default(), description.unwrap_or_default());
        let allowlist = source_allowlist("source_allowlist", &req.source_allowlist)?;
        let input = req.access_scope.unwrap_or_default();
        if input.portal_access {
            return Err(AccountError::ApiMemberRestricted(
                "an API member never has portal access: it acts through its API tokens",
            )
            .into());
        }
        let scope = self
            .parse_scope(
                &caller.account_id,
                &input,
                &ScopeFields::ALL,
                Scope::default(),
            )
            .await?;
        let new = app::create_api_member(
            self,
            &caller.actor(),
            ApiMemberFields {
                name,
                description,
                source_allowlist: allowlist,
            },
            scope,
        )
        .await?;
        let member = self.member_pb(&new.row, &new.scope, None, Some(&new.account));
        Ok(pb::CreateApiMemberResponse {
            member: Some(member),
        })
    }

    /// UpdateApiMember: name, description and source allowlist of an API
    /// member; a new allowlist reaches the gateways through the policy log.
    pub(super) async fn do_update_api_member(
        &self,
        request: tonic::Request<pb::UpdateApiMemberRequest>,
    ) -> Result<pb::UpdateApiMemberResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let user = UserId::parse("user_id", &req.user_id)?;
        let paths = mask_paths(
            req.update_mask.as_ref(),
            &["*", "name", "description", "source_allowlist"],
        )?;
        let has = |p: &str| paths.iter().any(|x| x == p || x == "*");
        let mut v = Violations::default();
        let name = has("name")
            .then(|| v.take("name", validate::text(&req.name, 1, 100)))
            .flatten();
        let description = has("description")
            .then(|| v.take("description", validate::text(&req.description, 0, 500)))
            .flatten();
        v.finish()?;
        let allowlist = if has("source_allowlist") {
            Some(source_allowlist("source_allowlist", &req.source_allowlist)?)
        } else {
            None
        };
        let change = ApiMemberChange {
            name,
            description,
            source_allowlist: allowlist,
        };
        let row = app::update_api_member(self, &caller.actor(), &user, change).await?;
        Ok(pb::UpdateApiMemberResponse {
            member: Some(self.render_member(&row).await?),
        })
    }
}
