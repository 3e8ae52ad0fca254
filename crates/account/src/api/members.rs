//! Members: list, get, add, change role, suspend, reactivate, revoke,
//! leave, set access.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_proto::identity::RevocationReason;

use crate::peer_calls::{self, RevokeAccess};
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{decode_page_token_for, encode_page_token, page_size, parse_id};
use tenancy_runtime::{Error, Reason};

use super::{
    Api, Caller, access_entry, fingerprint, join_deadline, mask_paths, member_json,
    membership_entry,
};
use crate::domain::owners::{OwnerFacts, change_keeps_an_owner};
use crate::domain::{Scope, level, role, service_access, status, validate};
use crate::store::{self, AccountRow, MemberRow, b, i, n, s};

pub(crate) fn member_not_found() -> Error {
    Error::new(Reason::MemberNotFound, "member not found")
}

fn last_owner() -> Error {
    Error::new(
        Reason::LastActiveOwner,
        "the account must keep at least one active owner with portal access",
    )
}

fn revoked() -> Error {
    Error::new(
        Reason::MemberRevoked,
        "the membership was revoked; invite them again",
    )
}

fn facts(m: &MemberRow) -> OwnerFacts {
    OwnerFacts {
        role: m.role,
        status: m.status,
        portal_access: m.portal_access,
    }
}

/// A role from the request: OWNER or MANAGER.
pub(crate) fn parse_role(value: i32, field: &str) -> Result<i32, Error> {
    if value == role::OWNER || value == role::MANAGER {
        Ok(value)
    } else {
        Err(Error::invalid_field(field, "must be OWNER or MANAGER"))
    }
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
        account_id: &str,
        input: &pb::AccessScope,
        fields: &ScopeFields,
        base: Scope,
    ) -> Result<Scope, Error> {
        let mut scope = base;
        let mut v = Violations::default();
        let p = "access_scope";
        if fields.service_access {
            if (1..=3).contains(&input.service_access) {
                scope.service_access = input.service_access;
            } else {
                v.add(
                    format!("{p}.service_access"),
                    "NONE, ALL or SELECTED is required",
                );
            }
        }
        let mut ids_to_check: Vec<(String, String)> = Vec::new();
        if fields.selected {
            v.check(
                input.selected_service_ids.len() <= 1000,
                &format!("{p}.selected_service_ids"),
                "at most 1000",
            );
            let mut out: Vec<String> = Vec::new();
            for (k, id) in input.selected_service_ids.iter().enumerate() {
                let field = format!("{p}.selected_service_ids[{k}]");
                match parse_id(&field, id) {
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
        if scope.service_access != service_access::SELECTED && !scope.selected.is_empty() {
            v.add(
                format!("{p}.selected_service_ids"),
                "must be empty unless service_access is SELECTED",
            );
        }
        if fields.resources {
            v.check(
                input.resource_grants.len() <= 1000,
                &format!("{p}.resource_grants"),
                "at most 1000",
            );
            let mut out: Vec<(String, i32)> = Vec::new();
            for (k, g) in input.resource_grants.iter().enumerate() {
                let field = format!("{p}.resource_grants[{k}]");
                if !(g.level == level::VIEW || g.level == level::MANAGE) {
                    v.add(format!("{field}.level"), "VIEW or MANAGE is required");
                }
                match parse_id(&field, &g.service_id) {
                    Ok(id) if out.iter().any(|(x, _)| *x == id) => {
                        v.add(format!("{field}.service_id"), "one grant per service")
                    }
                    Ok(id) => {
                        ids_to_check.push((format!("{field}.service_id"), id.clone()));
                        out.push((id, g.level));
                    }
                    Err(_) => v.add(format!("{field}.service_id"), "must be a UUID"),
                }
            }
            scope.resources = out;
        }
        if fields.tags {
            v.check(
                input.tag_grants.len() <= 100,
                &format!("{p}.tag_grants"),
                "at most 100",
            );
            let mut out: Vec<(String, i32)> = Vec::new();
            for (k, g) in input.tag_grants.iter().enumerate() {
                let field = format!("{p}.tag_grants[{k}]");
                if !(g.level == level::VIEW || g.level == level::MANAGE) {
                    v.add(format!("{field}.level"), "VIEW or MANAGE is required");
                }
                match validate::tag(&g.tag) {
                    Ok(t) if out.iter().any(|(x, _)| *x == t) => {
                        v.add(format!("{field}.tag"), "one grant per tag")
                    }
                    Ok(t) => out.push((t, g.level)),
                    Err(e) => v.add(format!("{field}.tag"), e),
                }
            }
            scope.tags = out;
        }
        v.finish()?;
        let ids: Vec<String> = ids_to_check.iter().map(|(_, id)| id.clone()).collect();
        let existing = store::existing_services(&self.db, account_id, &ids).await?;
        let mut missing = Error::new(Reason::ServiceIdUnknown, "unknown service ids");
        let mut any = false;
        for (field, id) in &ids_to_check {
            if !existing.contains(id) {
                missing = missing.with_field(field.clone(), "no such service in the account");
                any = true;
            }
        }
        if any {
            return Err(missing);
        }
        Ok(scope)
    }

    /// Changes one member in one transaction with the last-owner rule,
    /// audit and policy log. `change` returns whether anything changed.
    pub(crate) async fn mutate_member(
        &self,
        caller: &Caller,
        target: &str,
        action: &str,
        change: impl FnOnce(&mut MemberRow, &mut Scope) -> Result<bool, Error>,
        scope_changed: bool,
    ) -> Result<(MemberRow, MemberRow), Error> {
        let now = self.now();
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        // The caller's own membership may have changed since the request
        // began (e.g. demoted by another owner a moment ago): check again
        // under the lock.
        let me = store::member(&txn, &caller.account_id, &caller.user_id).await?;
        let still = me.as_ref().is_some_and(|m| {
            m.status == status::ACTIVE && m.portal_access && m.role >= caller.member.role
        });
        if !still {
            return Err(Error::role_too_low(
                super::auth_role(caller.member.role),
                "your role in this account changed; this is no longer allowed",
            ));
        }
        let before = store::member(&txn, &caller.account_id, target)
            .await?
            .ok_or_else(member_not_found)?;
        let mut scope = store::scope(&txn, &before).await?;
        let mut row = before.clone();
        if !change(&mut row, &mut scope)? {
            txn.commit().await?;
            return Ok((before, row));
        }
        row.portal_access = scope.portal_access;
        row.service_access = scope.service_access;
        let owners = store::active_owners(&txn, &caller.account_id).await?;
        if !change_keeps_an_owner(facts(&before), facts(&row), owners) {
            return Err(last_owner());
        }
        row.update_time = now;
        row.update(&txn).await?;
        if scope_changed {
            store::replace_grants(&txn, &row.account_id, &row.user_id, &scope).await?;
        }
        let (b_json, a_json) = if scope_changed {
            let old = store::scope(&self.db, &before).await.unwrap_or_default();
            (
                serde_json::to_value(&old).ok(),
                serde_json::to_value(&scope).ok(),
            )
        } else {
            (Some(member_json(&before)), Some(member_json(&row)))
        };
        self.audit(
            &caller.principal,
            &caller.account_id,
            action,
            ("member", target),
            b_json,
            a_json,
        )
        .insert(&txn)
        .await?;
        // Gateways follow role, status and portal access; a scope change
        // alone is logged for the access caches only.
        let policy_relevant = before.role != row.role
            || before.status != row.status
            || before.portal_access != row.portal_access;
        let entry = if policy_relevant {
            membership_entry(&row)
        } else {
            access_entry(&row.account_id)
        };
        store::append_policy(&txn, now, vec![entry]).await?;
        // A member who loses access loses their API tokens for the account
        // in identity, for good: the call is written in this transaction
        // (see `crate::peer_calls`) so it cannot be forgotten.
        let lost_access = (before.status == status::ACTIVE && row.status != status::ACTIVE)
            || (before.portal_access && !row.portal_access);
        let revoke = if lost_access {
            let reason = match (row.status, action) {
                (status::SUSPENDED, _) => RevocationReason::MemberSuspended,
                (_, "member.leave") => RevocationReason::MemberLeft,
                _ => RevocationReason::MemberRevoked,
            };
            let call = RevokeAccess::new(&row.user_id, &row.account_id, reason, now);
            let id = peer_calls::enqueue(&txn, &call).await?;
            Some((id, call))
        } else {
            None
        };
        txn.commit().await?;
        self.policy_committed(&row.account_id);
        if let Some((id, call)) = revoke {
            // In a task of its own, so a caller hanging up cannot leave the
            // call waiting for its lease to run out.
            let calls = self.peer_calls.clone();
            let delivery = tokio::spawn(async move { calls.deliver(&id, &call).await });
            if let Err(error) = delivery.await {
                tracing::warn!(%error, "peer call delivery task failed; the worker retries");
            }
        }
        Ok((before, row))
    }

    pub(super) async fn do_list_members(
        &self,
        request: tonic::Request<pb::ListMembersRequest>,
    ) -> Result<pb::ListMembersResponse, Error> {
        let caller = self.caller(&request, role::MANAGER).await?;
        let req = request.into_inner();
        list_members(self, &caller.account_id, req).await
    }

    pub(super) async fn do_get_member(
        &self,
        request: tonic::Request<pb::GetMemberRequest>,
    ) -> Result<pb::GetMemberResponse, Error> {
        let caller = self.caller(&request, role::MANAGER).await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        let row = store::member(&self.db, &caller.account_id, &user)
            .await?
            .ok_or_else(member_not_found)?;
        Ok(pb::GetMemberResponse {
            member: Some(self.render_member(&row).await?),
        })
    }

    pub(super) async fn do_change_member_role(
        &self,
        request: tonic::Request<pb::ChangeMemberRoleRequest>,
    ) -> Result<pb::ChangeMemberRoleResponse, Error> {
        let caller = self.caller(&request, role::OWNER).await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        let new_role = parse_role(request.get_ref().role, "role")?;
        let (_, row) = self
            .mutate_member(
                &caller,
                &user,
                "member.change_role",
                |m, _| {
                    if m.status == status::REVOKED {
                        return Err(revoked());
                    }
                    let changed = m.role != new_role;
                    m.role = new_role;
                    Ok(changed)
                },
                false,
            )
            .await?;
        Ok(pb::ChangeMemberRoleResponse {
            member: Some(self.render_member(&row).await?),
        })
    }

    pub(super) async fn do_suspend_member(
        &self,
        request: tonic::Request<pb::SuspendMemberRequest>,
    ) -> Result<pb::SuspendMemberResponse, Error> {
        let caller = self.caller(&request, role::OWNER).await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        if user == caller.user_id {
            return Err(Error::new(Reason::TargetIsSelf, "use LeaveAccount"));
        }
        let (_, row) = self
            .mutate_member(
                &caller,
                &user,
                "member.suspend",
                |m, _| {
                    if m.status == status::REVOKED {
                        return Err(revoked());
                    }
                    let changed = m.status != status::SUSPENDED;
                    m.status = status::SUSPENDED;
                    Ok(changed)
                },
                false,
            )
            .await?;
        Ok(pb::SuspendMemberResponse {
            member: Some(self.render_member(&row).await?),
        })
    }

    pub(super) async fn do_reactivate_member(
        &self,
        request: tonic::Request<pb::ReactivateMemberRequest>,
    ) -> Result<pb::ReactivateMemberResponse, Error> {
        let caller = self.caller(&request, role::OWNER).await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        let (_, row) = self
            .mutate_member(
                &caller,
                &user,
                "member.reactivate",
                |m, _| {
                    if m.status == status::REVOKED {
                        return Err(revoked());
                    }
                    let changed = m.status != status::ACTIVE;
                    m.status = status::ACTIVE;
                    Ok(changed)
                },
                false,
            )
            .await?;
        Ok(pb::ReactivateMemberResponse {
            member: Some(self.render_member(&row).await?),
        })
    }

    pub(super) async fn do_revoke_member(
        &self,
        request: tonic::Request<pb::RevokeMemberRequest>,
    ) -> Result<pb::RevokeMemberResponse, Error> {
        let caller = self.caller(&request, role::OWNER).await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        if user == caller.user_id {
            return Err(Error::new(Reason::TargetIsSelf, "use LeaveAccount"));
        }
        let (_, row) = self
            .mutate_member(
                &caller,
                &user,
                "member.revoke",
                |m, _| {
                    let changed = m.status != status::REVOKED;
                    m.status = status::REVOKED;
                    Ok(changed)
                },
                false,
            )
            .await?;
        Ok(pb::RevokeMemberResponse {
            member: Some(self.render_member(&row).await?),
        })
    }

    pub(super) async fn do_leave_account(
        &self,
        request: tonic::Request<pb::LeaveAccountRequest>,
    ) -> Result<pb::LeaveAccountResponse, Error> {
        let caller = self.caller(&request, role::MANAGER).await?;
        let me = caller.user_id.clone();
        self.mutate_member(
            &caller,
            &me,
            "member.leave",
            |m, _| {
                m.status = status::REVOKED;
                Ok(true)
            },
            false,
        )
        .await?;
        Ok(pb::LeaveAccountResponse {})
    }

    pub(super) async fn do_set_member_access(
        &self,
        request: tonic::Request<pb::SetMemberAccessRequest>,
    ) -> Result<pb::SetMemberAccessResponse, Error> {
        let caller = self.caller(&request, role::OWNER).await?;
        let req = request.into_inner();
        let user = parse_id("user_id", &req.user_id)?;
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
        let current = store::member(&self.db, &caller.account_id, &user)
            .await?
            .ok_or_else(member_not_found)?;
        if current.status == status::REVOKED {
            return Err(revoked());
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
        // Giving portal access to someone without a password goes through
        // an invitation: they get access when they accept it.
        let needs_invitation =
            wanted.portal_access && !current.portal_access && current.password_pending;
        if needs_invitation {
            wanted.portal_access = false;
        }
        let (_, row) = self
            .mutate_member(
                &caller,
                &user,
                "member.set_access",
                |m, scope| {
                    if m.status == status::REVOKED {
                        return Err(revoked());
                    }
                    let changed = *scope != wanted;
                    *scope = wanted;
                    Ok(changed)
                },
                true,
            )
            .await?;
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
        let caller = self.caller(&request, role::OWNER).await?;
        let req = request.into_inner();
        let mut v = Violations::default();
        let email = v.take("email", validate::email(&req.email));
        let name = v.take("name", validate::text(&req.name, 1, 100));
        if !(req.role == role::OWNER || req.role == role::MANAGER) {
            v.add("role", "must be OWNER or MANAGER");
        }
        v.finish()?;
        let (email, name) = (email.unwrap_or_default(), name.unwrap_or_default());
        let input = req.access_scope.unwrap_or_default();
        let mut scope = self
            .parse_scope(
                &caller.account_id,
                &input,
                &ScopeFields::ALL,
                Scope::default(),
            )
            .await?;
        scope.portal_access = false;
        let (user, _) = self.peers.ensure_user(&email, &name).await?;
        let now = self.now();
        let txn = store::begin(&self.db).await?;
        store::lock_account(&txn, &caller.account_id).await?;
        if let Some(existing) = store::member(&txn, &caller.account_id, &user.id).await?
            && existing.status != status::REVOKED
        {
            return Err(Error::new(
                Reason::MemberExists,
                "this person is already a member",
            ));
        }
        let account = AccountRow::load(&txn, &caller.account_id)
            .await?
            .ok_or_else(super::internal::account_not_found)?;
        let row = MemberRow {
            account_id: caller.account_id.clone(),
            user_id: user.id.clone(),
            role: req.role,
            status: status::ACTIVE,
            portal_access: false,
            password_pending: !user.password_set,
            service_access: scope.service_access,
            join_time: now,
            update_time: now,
            name_key: user.name.to_lowercase(),
            email: user.email.clone(),
            mfa_deadline: join_deadline(&account, now),
        };
        row.upsert(&txn).await?;
        store::replace_grants(&txn, &row.account_id, &row.user_id, &scope).await?;
        self.audit(
            &caller.principal,
            &caller.account_id,
            "member.add",
            ("member", &row.user_id),
            None,
            Some(member_json(&row)),
        )
        .insert(&txn)
        .await?;
        store::append_policy(&txn, now, vec![membership_entry(&row)]).await?;
        txn.commit().await?;
        self.policy_committed(&row.account_id);
        Ok(pb::AddMemberResponse {
            member: Some(self.member_pb(&row, &scope, Some(&user), Some(&account))),
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
    account_id: &str,
    req: pb::ListMembersRequest,
) -> Result<pb::ListMembersResponse, Error> {
    let size = page_size(req.page_size)?;
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
    let column = match pb::MemberOrderBy::try_from(req.order_by).unwrap_or_default() {
        pb::MemberOrderBy::Name => "name_key",
        pb::MemberOrderBy::Email => "email",
        _ => "join_time",
    };
    let mut sql = format!(
        "SELECT {} FROM account_members WHERE account_id = $1",
        store::member_columns()
    );
    let mut values = vec![s(account_id)];
    if req.role != 0 {
        values.push(n(req.role));
        sql.push_str(&format!(" AND role = ${}", values.len()));
    }
    if !statuses.is_empty() {
        let mut ph = Vec::new();
        for st in &statuses {
            values.push(n(*st));
            ph.push(format!("${}", values.len()));
        }
        sql.push_str(&format!(" AND status IN ({})", ph.join(", ")));
    }
    if let Some(p) = req.portal_access {
        values.push(b(p));
        sql.push_str(&format!(" AND portal_access = ${}", values.len()));
    }
    let (cmp, dir) = if req.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = &cursor {
        let key = if column == "join_time" {
            i(c.k.as_i64().ok_or_else(super::bad_page_token)?)
        } else {
            s(c.k.as_str().ok_or_else(super::bad_page_token)?)
        };
        values.push(key);
        let a = values.len();
        values.push(s(c.u.as_str()));
        let bb = values.len();
        sql.push_str(&format!(" AND ({column}, user_id) {cmp} (${a}, ${bb})"));
    }
    sql.push_str(&format!(
        " ORDER BY {column} {dir}, user_id {dir} LIMIT {}",
        size + 1
    ));
    let rows = store::all(&api.db, &sql, values).await?;
    let more = rows.len() as u64 > size;
    let rows: Vec<MemberRow> = rows
        .iter()
        .take(usize::try_from(size).unwrap_or(usize::MAX))
        .map(MemberRow::read)
        .collect::<Result<_, _>>()?;
    let ids: Vec<String> = rows.iter().map(|r| r.user_id.clone()).collect();
    let account = AccountRow::load(&api.db, account_id).await?;
    let (users, scopes) = tokio::join!(
        api.users_or_empty(&ids),
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
            let k = match column {
                "name_key" => serde_json::json!(last.name_key),
                "email" => serde_json::json!(last.email),
                _ => serde_json::json!(last.join_time),
            };
            encode_page_token(&Token {
                f,
                k,
                u: last.user_id.clone(),
            })
        }
        _ => String::new(),
    };
    Ok(pb::ListMembersResponse {
        members,
        next_page_token,
    })
}
