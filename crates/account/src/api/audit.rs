//! The audit log: ListAuditEvents.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::Error;
use tenancy_runtime::ids::{decode_page_token_for, encode_page_token, page_size};

use super::{Api, fingerprint, to_struct, ts};
use crate::domain::Role;
use crate::store::{self, AuditQuery, AuditRow};

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
        let query = AuditQuery {
            actor_kind: req.actor_kind,
            actor_id: &req.actor_id,
            action: &req.action,
            target_type: &req.target_type,
            target_id: &req.target_id,
            start,
            end,
            after: cursor.as_ref().map(|c| (c.t, c.id.as_str())),
            limit: size + 1,
        };
        let rows = store::list_audit_events(&self.db, &caller.account_id, &query).await?;
        let more = rows.len() as u64 > size;
        let events: Vec<AuditRow> = rows
            .into_iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .collect();
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
