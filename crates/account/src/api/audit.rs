//! The audit log: ListAuditEvents.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::Error;
use tenancy_runtime::db;
use tenancy_runtime::ids::{decode_page_token_for, encode_page_token, page_size};

use super::{Api, fingerprint, to_struct, ts};
use crate::domain::Role;
use crate::store::{AUDIT_COLUMNS, AuditRow, i, n, s};

pub(crate) fn event_pb(r: &AuditRow) -> pb::AuditEvent {
    pb::AuditEvent {
        id: r.id.clone(),
        account_id: r.account_id.clone(),
        time: Some(ts(r.time)),
        actor_kind: r.actor_kind,
        actor_id: r.actor_id.clone(),
        actor_display_name: r.actor_display_name.clone(),
        token_kind: r.token_kind,
        client_ip: r.client_ip.clone(),
        user_agent: r.user_agent.clone(),
        action: r.action.clone(),
        target_type: r.target_type.clone(),
        target_id: r.target_id.clone(),
        before: r.before.as_deref().and_then(to_struct),
        after: r.after.as_deref().and_then(to_struct),
        request_id: r.request_id.clone(),
    }
}

#[derive(Serialize, Deserialize)]
struct Token {
    f: String,
    t: i64,
    id: String,
}

impl Api {
    pub(super) async fn do_list_audit_events(
        &self,
        request: tonic::Request<pb::ListAuditEventsRequest>,
    ) -> Result<pb::ListAuditEventsResponse, Error> {
        let caller = self.caller(&request, Role::Owner).await?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let start = req.start_time.as_ref().map(super::ms);
        let end = req.end_time.as_ref().map(super::ms);
        if let (Some(a), Some(b)) = (start, end)
            && a >= b
        {
            return Err(Error::invalid_field(
                "start_time",
                "must be before end_time",
            ));
        }
        let f = fingerprint(&(
            req.actor_kind,
            &req.actor_id,
            &req.action,
            &req.target_type,
            &req.target_id,
            start,
            end,
        ));
        let cursor = decode_page_token_for::<Token>(&req.page_token, |t| t.f == f)?;
        let mut sql =
            format!("SELECT {AUDIT_COLUMNS} FROM account_audit_events WHERE account_id = $1");
        let mut values = vec![s(caller.account_id.as_str())];
        fn push(
            sql: &mut String,
            values: &mut Vec<sea_orm::Value>,
            clause: &str,
            v: sea_orm::Value,
        ) {
            values.push(v);
            sql.push_str(&clause.replace("$?", &format!("${}", values.len())));
        }
        if req.actor_kind != 0 {
            push(
                &mut sql,
                &mut values,
                " AND actor_kind = $?",
                n(req.actor_kind),
            );
        }
        if !req.actor_id.is_empty() {
            push(
                &mut sql,
                &mut values,
                " AND actor_id = $?",
                s(req.actor_id.as_str()),
            );
        }
        if !req.action.is_empty() {
            if req.action.ends_with('.') {
                let len = i32::try_from(req.action.len()).unwrap_or(64);
                push(
                    &mut sql,
                    &mut values,
                    &format!(" AND substr(action, 1, {len}) = $?"),
                    s(req.action.as_str()),
                );
            } else {
                push(
                    &mut sql,
                    &mut values,
                    " AND action = $?",
                    s(req.action.as_str()),
                );
            }
        }
        if !req.target_type.is_empty() {
            push(
                &mut sql,
                &mut values,
                " AND target_type = $?",
                s(req.target_type.as_str()),
            );
        }
        if !req.target_id.is_empty() {
            push(
                &mut sql,
                &mut values,
                " AND target_id = $?",
                s(req.target_id.as_str()),
            );
        }
        if let Some(a) = start {
            push(&mut sql, &mut values, " AND event_time >= $?", i(a));
        }
        if let Some(b) = end {
            push(&mut sql, &mut values, " AND event_time < $?", i(b));
        }
        if let Some(c) = &cursor {
            values.push(i(c.t));
            let t = values.len();
            values.push(s(c.id.as_str()));
            let d = values.len();
            sql.push_str(&format!(
                " AND (event_time < ${t} OR (event_time = ${t} AND id < ${d}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY event_time DESC, id DESC LIMIT {}",
            size + 1
        ));
        let rows = db::all(&self.db, &sql, values).await?;
        let more = rows.len() as u64 > size;
        let events: Vec<AuditRow> = rows
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .map(AuditRow::read)
            .collect::<Result<_, _>>()?;
        let next_page_token = match (more, events.last()) {
            (true, Some(last)) => encode_page_token(&Token {
                f,
                t: last.time,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        Ok(pb::ListAuditEventsResponse {
            events: events.iter().map(event_pb).collect(),
            next_page_token,
        })
    }
}
