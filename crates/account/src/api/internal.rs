//! AccountInternalService: access decisions, principal state, audit writes.

use std::collections::{HashMap, HashSet};

use tenancy_proto::account as pb;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::new_id;
use tenancy_runtime::{Error, ErrorCode};

use super::{Api, from_struct, membership_state, scope_pb, settings_pb, ts};
use crate::domain::access::{self, MemberFacts, Target, TargetGrants, reason};
use crate::domain::{level, role, service_access, status};
use crate::store::{self, AccountRow, AuditRow, s};

pub(crate) fn account_not_found() -> Error {
    Error::new(
        ErrorCode::NotFound,
        "ACCOUNT_NOT_FOUND",
        "account not found",
    )
}

fn required(v: &mut Violations, field: &str, value: &str) {
    v.check(!value.trim().is_empty(), field, "required");
}

fn facts(row: &sea_orm::QueryResult) -> Result<MemberFacts, Error> {
    Ok(MemberFacts {
        role: store::get(row, "role")?,
        status: store::get(row, "status")?,
        portal_access: store::get(row, "portal_access")?,
        service_access: store::get(row, "service_access")?,
    })
}

impl Api {
    pub(super) async fn do_check_access(
        &self,
        req: pb::CheckAccessRequest,
    ) -> Result<pb::CheckAccessResponse, Error> {
        let mut v = Violations::default();
        required(&mut v, "user_id", &req.user_id);
        required(&mut v, "account_id", &req.account_id);
        let wanted = req.level;
        if req.target.is_some() && !(wanted == level::VIEW || wanted == level::MANAGE) {
            v.add("level", "VIEW or MANAGE is required with a target");
        }
        v.finish()?;
        let user = req.user_id.trim().to_lowercase();
        let account = req.account_id.trim().to_lowercase();
        let (member, target) = match &req.target {
            None => {
                let row = store::one(
                    &self.db,
                    "SELECT role, status, portal_access, service_access FROM account_members WHERE account_id = $1 AND user_id = $2",
                    vec![s(account.as_str()), s(user.as_str())],
                )
                .await?;
                (row.map(|r| facts(&r)).transpose()?, Target::Account)
            }
            Some(pb::check_access_request::Target::ServiceId(id)) => {
                let id = id.trim().to_lowercase();
                let row = store::one(
                    &self.db,
                    "SELECT m.role, m.status, m.portal_access, m.service_access, \
                     (SELECT COUNT(*) FROM account_services sv WHERE sv.id = $3 AND sv.account_id = $1) AS svc, \
                     (SELECT COUNT(*) FROM account_member_grants g WHERE g.account_id = $1 AND g.user_id = $2 AND g.grant_kind = 1 AND g.grant_key = $3) AS sel, \
                     (SELECT MAX(g.level) FROM account_member_grants g WHERE g.account_id = $1 AND g.user_id = $2 AND g.grant_kind = 2 AND g.grant_key = $3) AS res, \
                     (SELECT MAX(g.level) FROM account_member_grants g JOIN account_service_tags t ON t.tag = g.grant_key AND t.account_id = g.account_id WHERE t.service_id = $3 AND g.account_id = $1 AND g.user_id = $2 AND g.grant_kind = 3) AS tagl \
                     FROM account_members m WHERE m.account_id = $1 AND m.user_id = $2",
                    vec![s(account.as_str()), s(user.as_str()), s(id.as_str())],
                )
                .await?;
                match row {
                    None => (None, Target::Account),
                    Some(r) => {
                        let grants = TargetGrants {
                            exists: store::get::<i64>(&r, "svc")? > 0,
                            selected: store::get::<i64>(&r, "sel")? > 0,
                            resource_level: store::get::<Option<i32>>(&r, "res")?.unwrap_or(0),
                            tag_level: store::get::<Option<i32>>(&r, "tagl")?.unwrap_or(0),
                        };
                        (Some(facts(&r)?), Target::Service(grants))
                    }
                }
            }
            Some(pb::check_access_request::Target::Tag(tag)) => {
                let tag = tag.trim().to_lowercase();
                let row = store::one(
                    &self.db,
                    "SELECT m.role, m.status, m.portal_access, m.service_access, \
                     (SELECT MAX(g.level) FROM account_member_grants g WHERE g.account_id = $1 AND g.user_id = $2 AND g.grant_kind = 3 AND g.grant_key = $3) AS tagl \
                     FROM account_members m WHERE m.account_id = $1 AND m.user_id = $2",
                    vec![s(account.as_str()), s(user.as_str()), s(tag.as_str())],
                )
                .await?;
                match row {
                    None => (None, Target::Account),
                    Some(r) => {
                        let grants = TargetGrants {
                            exists: true,
                            tag_level: store::get::<Option<i32>>(&r, "tagl")?.unwrap_or(0),
                            ..TargetGrants::default()
                        };
                        (Some(facts(&r)?), Target::Tag(grants))
                    }
                }
            }
        };
        let decision = access::decide(member, target, wanted);
        let (role, status) = match member {
            Some(m) if m.status != status::REVOKED => (m.role, m.status),
            _ => (0, 0),
        };
        Ok(pb::CheckAccessResponse {
            allowed: decision.allowed,
            reason: decision.reason,
            effective_level: decision.effective_level,
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
        let wanted = req.level;
        if !(wanted == level::VIEW || wanted == level::MANAGE) {
            v.add("level", "VIEW or MANAGE is required");
        }
        v.check(req.service_ids.len() <= 500, "service_ids", "at most 500");
        v.finish()?;
        let user = req.user_id.trim().to_lowercase();
        let account = req.account_id.trim().to_lowercase();
        let ids: Vec<String> = req
            .service_ids
            .iter()
            .map(|i| i.trim().to_lowercase())
            .collect();
        let row = store::member(&self.db, &account, &user).await?;
        let member = row.as_ref().map(|r| MemberFacts {
            role: r.role,
            status: r.status,
            portal_access: r.portal_access,
            service_access: r.service_access,
        });
        let member_role = match member {
            Some(m) if m.status != status::REVOKED => m.role,
            _ => 0,
        };
        if let Some(denied) = access::membership_denial(member) {
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
        let (Some(m), Some(row)) = (member, row) else {
            return Err(Error::internal("member vanished"));
        };
        let existing = store::existing_services(&self.db, &account, &ids).await?;
        let scope = store::scope(&self.db, &row).await?;
        let selected: HashSet<&str> = scope.selected.iter().map(String::as_str).collect();
        let resources: HashMap<&str, i32> = scope
            .resources
            .iter()
            .map(|(k, l)| (k.as_str(), *l))
            .collect();
        let tag_levels: HashMap<&str, i32> =
            scope.tags.iter().map(|(k, l)| (k.as_str(), *l)).collect();
        // Tags of the requested services, for tag grants.
        let mut service_tags: HashMap<String, Vec<String>> = HashMap::new();
        if !scope.tags.is_empty() && !existing.is_empty() {
            let list: Vec<String> = existing.iter().cloned().collect();
            for chunk in list.chunks(500) {
                let placeholders: Vec<String> =
                    (0..chunk.len()).map(|k| format!("${}", k + 2)).collect();
                let mut values = vec![s(account.as_str())];
                values.extend(chunk.iter().map(|c| s(c.as_str())));
                let rows = store::all(
                    &self.db,
                    &format!("SELECT service_id, tag FROM account_service_tags WHERE account_id = $1 AND service_id IN ({})", placeholders.join(", ")),
                    values,
                )
                .await?;
                for r in rows {
                    service_tags
                        .entry(store::get(&r, "service_id")?)
                        .or_default()
                        .push(store::get(&r, "tag")?);
                }
            }
        }
        let results = req
            .service_ids
            .iter()
            .zip(&ids)
            .map(|(original, id)| {
                let grants = TargetGrants {
                    exists: existing.contains(id),
                    selected: selected.contains(id.as_str()),
                    resource_level: resources.get(id.as_str()).copied().unwrap_or(0),
                    tag_level: service_tags
                        .get(id)
                        .map(|tags| {
                            tags.iter()
                                .filter_map(|t| tag_levels.get(t.as_str()))
                                .copied()
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0),
                };
                let d = access::decide(Some(m), Target::Service(grants), wanted);
                pb::ServiceAccessResult {
                    service_id: original.clone(),
                    allowed: d.allowed,
                    reason: d.reason,
                    effective_level: d.effective_level,
                }
            })
            .collect();
        let all_services = m.role == role::OWNER || m.service_access == service_access::ALL;
        let mut accessible = Vec::new();
        if req.include_accessible_service_ids && !all_services {
            let mut set: HashSet<String> = HashSet::new();
            if m.service_access == service_access::SELECTED {
                set.extend(scope.selected.iter().cloned());
            }
            set.extend(
                scope
                    .resources
                    .iter()
                    .filter(|(_, l)| *l >= wanted)
                    .map(|(k, _)| k.clone()),
            );
            let tags: Vec<&String> = scope
                .tags
                .iter()
                .filter(|(_, l)| *l >= wanted)
                .map(|(k, _)| k)
                .collect();
            if !tags.is_empty() {
                let placeholders: Vec<String> =
                    (0..tags.len()).map(|k| format!("${}", k + 2)).collect();
                let mut values = vec![s(account.as_str())];
                values.extend(tags.iter().map(|t| s(t.as_str())));
                let rows = store::all(
                    &self.db,
                    &format!("SELECT DISTINCT service_id FROM account_service_tags WHERE account_id = $1 AND tag IN ({})", placeholders.join(", ")),
                    values,
                )
                .await?;
                for r in rows {
                    set.insert(store::get(&r, "service_id")?);
                }
            }
            accessible = set.into_iter().collect();
            accessible.sort();
        }
        Ok(pb::BatchCheckAccessResponse {
            results,
            membership_reason: if m.role == role::OWNER {
                reason::OWNER
            } else {
                reason::ACTIVE_MEMBER
            },
            role: m.role,
            service_access: if m.role == role::OWNER {
                service_access::ALL
            } else {
                m.service_access
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
        let account = AccountRow::load(&self.db, req.account_id.trim())
            .await?
            .ok_or_else(account_not_found)?;
        let row = store::member(&self.db, &account.id, req.user_id.trim())
            .await?
            .filter(|m| m.status != status::REVOKED);
        let scope = match &row {
            Some(r) => Some(store::scope(&self.db, r).await?),
            None => None,
        };
        Ok(pb::GetPrincipalStateResponse {
            membership: row.as_ref().map(membership_state),
            access_scope: scope.as_ref().map(scope_pb),
            security_settings: Some(settings_pb(&account)),
            mfa_deadline: if account.enforce_mfa {
                row.as_ref().and_then(|r| r.mfa_deadline).map(ts)
            } else {
                None
            },
            position,
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
            req.idempotency_key.chars().count() <= 64,
            "idempotency_key",
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
        let hash = super::fingerprint(&(
            &row.account_id,
            row.actor_kind,
            &row.actor_id,
            &row.action,
            &row.target_type,
            &row.target_id,
            &row.before,
            &row.after,
        ));
        let txn = store::begin(&self.db).await?;
        if store::one(
            &txn,
            "SELECT id FROM account_accounts WHERE id = $1",
            vec![s(row.account_id.as_str())],
        )
        .await?
        .is_none()
        {
            return Err(account_not_found());
        }
        let scope = "record_audit_event";
        if !req.idempotency_key.is_empty()
            && let Some(id) = store::idempotent(
                &txn,
                scope,
                &req.idempotency_key,
                &hash,
                now - super::accounts::IDEMPOTENCY_WINDOW_MS,
            )
            .await?
        {
            let existing = store::one(
                &txn,
                &format!(
                    "SELECT {} FROM account_audit_events WHERE id = $1",
                    store::AUDIT_COLUMNS
                ),
                vec![s(id)],
            )
            .await?
            .ok_or_else(|| Error::internal("remembered audit event missing"))?;
            txn.commit().await?;
            return Ok(pb::RecordAuditEventResponse {
                event: Some(super::audit::event_pb(&AuditRow::read(&existing)?)),
            });
        }
        row.insert(&txn).await?;
        if !req.idempotency_key.is_empty() {
            store::remember(&txn, scope, &req.idempotency_key, &hash, &row.id, now).await?;
        }
        txn.commit().await?;
        Ok(pb::RecordAuditEventResponse {
            event: Some(super::audit::event_pb(&row)),
        })
    }
}
