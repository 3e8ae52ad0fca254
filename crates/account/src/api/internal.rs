//! AccountInternalService: access decisions, principal state, audit writes.

use tenancy_proto::account as pb;
use tenancy_runtime::Error;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{AccountId, ServiceId, UserId, new_id};

use super::{Api, from_struct, membership_state, scope_pb, settings_pb, ts};
use crate::domain::access::{self, Target, reason};
use crate::domain::default_account::default_account;
use crate::domain::{Level, MemberStatus, Role, ServiceAccess};
use crate::store::{self, AccountRow, AuditRow};

fn required(v: &mut Violations, field: &str, value: &str) {
    v.check(!value.trim().is_empty(), field, "required");
}

/// An internal caller's service id as stored (trimmed, lower case): looked
/// up as given, not validated as a UUID (an unknown one is not found).
fn service_id(value: &str) -> ServiceId {
    ServiceId::trusted(normalised(value))
}

/// An id or tag as stored: trimmed, lower case (borrowed when it already is).
fn normalised(value: &str) -> std::borrow::Cow<'_, str> {
    let value = value.trim();
    if value.bytes().any(|b| b.is_ascii_uppercase()) || !value.is_ascii() {
        std::borrow::Cow::Owned(value.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

impl Api {
    pub(super) async fn do_check_access(
        &self,
        req: pb::CheckAccessRequest,
    ) -> Result<pb::CheckAccessResponse, Error> {
        let mut v = Violations::default();
        required(&mut v, "user_id", &req.user_id);
        required(&mut v, "account_id", &req.account_id);
        let wanted = Level::grantable(req.level);
        if req.target.is_some() && wanted.is_none() {
            v.add("level", "VIEW or MANAGE is required with a target");
        }
        v.finish()?;
        let user = UserId::trusted(normalised(&req.user_id));
        let account = AccountId::trusted(normalised(&req.account_id));
        let member = self.cache.member(&self.db, &account, &user).await?;
        let facts = member.as_ref().map(|m| m.facts);
        let target = match (&member, &req.target) {
            (None, _) | (_, None) => Target::Account,
            (Some(m), Some(pb::check_access_request::Target::ServiceId(id))) => {
                if access::membership_denial(facts).is_some() {
                    Target::Account
                } else {
                    let catalogue = self.cache.catalogue(&self.db, &account).await?;
                    Target::Service(m.on_service(&catalogue, &service_id(id)))
                }
            }
            (Some(m), Some(pb::check_access_request::Target::Tag(tag))) => {
                Target::Tag(m.on_tag(&normalised(tag)))
            }
        };
        let decision = access::decide(facts, target, wanted.unwrap_or(Level::None));
        let (role, status) = match facts {
            Some(m) if m.status != MemberStatus::Revoked => (m.role.code(), m.status.code()),
            _ => (0, 0),
        };
        Ok(pb::CheckAccessResponse {
            allowed: decision.allowed,
            reason: decision.reason,
            effective_level: decision.effective_level.code(),
            role,
            status,
        })
    }

    pub(super) async fn do_batch_check_access(
        &self,
        req: pb::BatchCheckAccessRequest,
    ) -> Result<pb::BatchCheckAccessResponse, Error> {
        let mut v = Violations::default();
        required(&mut v, "user_id", &req.user_id);
        required(&mut v, "account_id", &req.account_id);
        let wanted = Level::grantable(req.level);
        if wanted.is_none() {
            v.add("level", "VIEW or MANAGE is required");
        }
        let limit = super::at_most(
            "service_ids",
            req.service_ids.len(),
            super::limits::CHECKED_SERVICES,
        );
        v.take("service_ids", limit);
        v.finish()?;
        let wanted = wanted.unwrap_or(Level::View);
        let user = UserId::trusted(normalised(&req.user_id));
        let account = AccountId::trusted(normalised(&req.account_id));
        let member = self.cache.member(&self.db, &account, &user).await?;
        let facts = member.as_ref().map(|m| m.facts);
        let member_role = match facts {
            Some(m) if m.status != MemberStatus::Revoked => m.role.code(),
            _ => 0,
        };
        if let Some(denied) = access::membership_denial(facts) {
            return Ok(pb::BatchCheckAccessResponse {
                results: req
                    .service_ids
                    .iter()
                    .map(|id| pb::ServiceAccessResult {
                        service_id: id.clone(),
                        allowed: false,
                        reason: denied.reason,
                        effective_level: 0,
                    })
                    .collect(),
                membership_reason: denied.reason,
                role: member_role,
                service_access: 0,
                all_services: false,
                accessible_service_ids: Vec::new(),
            });
        }
        let Some(member) = member else {
            return Err(Error::internal("member vanished"));
        };
        let m = member.facts;
        let catalogue = self.cache.catalogue(&self.db, &account).await?;
        let results = req
            .service_ids
            .iter()
            .map(|original| {
                let grants = member.on_service(&catalogue, &service_id(original));
                let d = access::decide(Some(m), Target::Service(grants), wanted);
                pb::ServiceAccessResult {
                    service_id: original.clone(),
                    allowed: d.allowed,
                    reason: d.reason,
                    effective_level: d.effective_level.code(),
                }
            })
            .collect();
        let all_services = access::reaches_all_services(m);
        let accessible = if req.include_accessible_service_ids && !all_services {
            member
                .accessible(&catalogue, wanted)
                .into_iter()
                .map(ServiceId::into_string)
                .collect()
        } else {
            Vec::new()
        };
        Ok(pb::BatchCheckAccessResponse {
            results,
            membership_reason: if m.role == Role::Owner {
                reason::OWNER
            } else {
                reason::ACTIVE_MEMBER
            },
            role: m.role.code(),
            service_access: if m.role == Role::Owner {
                ServiceAccess::All.code()
            } else {
                m.service_access.code()
            },
            all_services,
            accessible_service_ids: accessible,
        })
    }

    pub(super) async fn do_get_principal_state(
        &self,
        req: pb::GetPrincipalStateRequest,
    ) -> Result<pb::GetPrincipalStateResponse, Error> {
        let mut v = Violations::default();
        required(&mut v, "user_id", &req.user_id);
        required(&mut v, "account_id", &req.account_id);
        v.finish()?;
        // The position first: the state read after it includes every event
        // at or below it.
        let position = store::policy_head(&self.db).await?;
        // Internal callers' ids are looked up as given (not validated as
        // UUIDs): an unknown one is simply not found.
        let account = AccountRow::load(&self.db, &AccountId::trusted(req.account_id.trim()))
            .await?
            .ok_or(crate::domain::AccountError::AccountNotFound)?;
        let row = store::member(&self.db, &account.id, &UserId::trusted(req.user_id.trim()))
            .await?
            .filter(|m| m.status != MemberStatus::Revoked);
        let scope = match &row {
            Some(r) => Some(store::scope(&self.db, r).await?),
            None => None,
        };
        Ok(pb::GetPrincipalStateResponse {
            membership: row.as_ref().map(|r| membership_state(&r.live())),
            access_scope: scope.as_ref().map(scope_pb),
            security_settings: Some(settings_pb(&account.settings())),
            mfa_deadline: if account.enforce_mfa {
                row.as_ref().and_then(|r| r.mfa_deadline).map(ts)
            } else {
                None
            },
            position,
        })
    }

    pub(super) async fn do_get_default_account(
        &self,
        req: pb::GetDefaultAccountRequest,
    ) -> Result<pb::GetDefaultAccountResponse, Error> {
        let mut v = Violations::default();
        required(&mut v, "user_id", &req.user_id);
        let limit = super::at_most(
            "preferred_account_ids",
            req.preferred_account_ids.len(),
            super::limits::PREFERRED_ACCOUNTS,
        );
        v.take("preferred_account_ids", limit);
        v.finish()?;
        let user = normalised(&req.user_id);
        let preferred: Vec<String> = req
            .preferred_account_ids
            .iter()
            .map(|id| normalised(id).into_owned())
            .filter(|id| !id.is_empty())
            .collect();
        let usable = store::usable_memberships(&self.db, &user, &preferred).await?;
        Ok(pb::GetDefaultAccountResponse {
            account_id: default_account(&preferred, &usable)
                .unwrap_or_default()
                .to_owned(),
        })
    }

    pub(super) async fn do_record_audit_event(
        &self,
        request: tonic::Request<pb::RecordAuditEventRequest>,
    ) -> Result<pb::RecordAuditEventResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let req = request.into_inner();
        let e = req.event.unwrap_or_default();
        let mut v = Violations::default();
        required(&mut v, "event.account_id", &e.account_id);
        v.check(
            pb::ActorKind::try_from(e.actor_kind).is_ok_and(|k| k != pb::ActorKind::Unspecified),
            "event.actor_kind",
            "required",
        );
        required(&mut v, "event.actor_id", &e.actor_id);
        let action_ok = !e.action.is_empty()
            && e.action.len() <= 64
            && e.action.contains('.')
            && e.action
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        v.check(
            action_ok,
            "event.action",
            "\"<target type>.<verb>\" in lower snake case, up to 64 characters",
        );
        v.check(
            !e.target_type.is_empty() && e.target_type.len() <= 64,
            "event.target_type",
            "1 to 64 characters",
        );
        v.check(
            e.actor_display_name.chars().count() <= 200,
            "event.actor_display_name",
            "at most 200 characters",
        );
        v.check(
            e.user_agent.chars().count() <= 500,
            "event.user_agent",
            "at most 500 characters",
        );
        v.check(
            req.request_id.chars().count() <= 64,
            "request_id",
            "at most 64 characters",
        );
        v.finish()?;
        let now = self.now();
        let row = AuditRow {
            id: new_id(),
            account_id: e.account_id.trim().to_lowercase(),
            time: e.time.as_ref().map(super::ms).unwrap_or(now),
            actor_kind: e.actor_kind,
            actor_id: e.actor_id,
            actor_display_name: e.actor_display_name,
            token_kind: e.token_kind,
            client_ip: e.client_ip,
            user_agent: e.user_agent,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            before: e.before.as_ref().map(from_struct),
            after: e.after.as_ref().map(from_struct),
            request_id: if e.request_id.is_empty() {
                principal.request_id.clone()
            } else {
                e.request_id
            },
        };
        let row = crate::app::audit::record_audit_event(self, row, &req.request_id).await?;
        Ok(pb::RecordAuditEventResponse {
            event: Some(super::audit::event_pb(&row)),
        })
    }
}
