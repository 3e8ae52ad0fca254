//! The service catalogue: RegisterService, UpdateService, DeleteService
//! (internal) and ListServices, GetService (members).

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::Error;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{
    AccountId, ServiceId, decode_page_token_for, encode_page_token, page_size, parse_id,
};

use super::{Api, Caller, fingerprint, mask_paths, ts};
use crate::app::services as app;
use crate::domain::access;
use crate::domain::{AccountError, Level, Role, Scope, validate};
use crate::store::{self, ServiceRow};

pub(crate) fn service_pb(r: &ServiceRow, access_level: i32) -> pb::Service {
    pb::Service {
        id: r.id.to_string(),
        account_id: r.account_id.to_string(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        tags: r.tags.clone(),
        external_id: r.external_id.clone().unwrap_or_default(),
        create_time: Some(ts(r.create_time)),
        update_time: Some(ts(r.update_time)),
        access_level,
        resource_kind: r.resource_kind,
    }
}

fn tags(input: &[String], v: &mut Violations) -> Vec<String> {
    let limit = super::at_most("service.tags", input.len(), super::limits::SERVICE_TAGS);
    if v.take("service.tags", limit).is_none() {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (k, t) in input.iter().enumerate() {
        if let Some(t) = v.take(&format!("service.tags[{k}]"), validate::tag(t))
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    v.check(out.len() <= 50, "service.tags", "at most 50 tags");
    out
}

fn apply(row: &mut ServiceRow, input: &pb::Service, paths: &[&str], v: &mut Violations) {
    for p in paths {
        match *p {
            "kind" => {
                if let Some(k) = v.take("service.kind", validate::kind(&input.kind)) {
                    row.kind = k;
                }
            }
            "name" => {
                if let Some(n) = v.take("service.name", validate::text(&input.name, 1, 200)) {
                    row.name = n;
                }
            }
            "tags" => row.tags = tags(&input.tags, v),
            "resource_kind" => match pb::ResourceKind::try_from(input.resource_kind) {
                Ok(pb::ResourceKind::Unspecified) => {
                    row.resource_kind = pb::ResourceKind::Other as i32;
                }
                Ok(kind) => row.resource_kind = kind as i32,
                Err(_) => v.add("service.resource_kind", "must be SERVER, STORAGE or OTHER"),
            },
            "external_id" => {
                if let Some(e) = v.take(
                    "service.external_id",
                    validate::text(&input.external_id, 0, 128),
                ) {
                    row.external_id = (!e.is_empty()).then_some(e);
                }
            }
            _ => {}
        }
    }
}

/// The caller's level on a service, from their scope.
fn level_on(caller: &Caller, scope: &Scope, service: &ServiceRow) -> Level {
    access::service_level(
        caller.member.access_facts(),
        access::grants_on(scope, &service.id, &service.tags),
    )
}

#[derive(Serialize, Deserialize)]
struct Token {
    f: String,
    name: String,
    id: String,
}

impl Api {
    pub(super) async fn do_register_service(
        &self,
        request: tonic::Request<pb::RegisterServiceRequest>,
    ) -> Result<pb::RegisterServiceResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let req = request.into_inner();
        let input = req.service.unwrap_or_default();
        let now = self.now();
        let mut v = Violations::default();
        let account_id = v.take(
            "service.account_id",
            parse_id("service.account_id", &input.account_id).map_err(|_| "must be a UUID"),
        );
        let mut row = ServiceRow {
            id: ServiceId::new(),
            account_id: AccountId::trusted(account_id.unwrap_or_default()),
            kind: String::new(),
            name: String::new(),
            tags: Vec::new(),
            external_id: None,
            create_time: now,
            update_time: now,
            resource_kind: pb::ResourceKind::Other as i32,
        };
        apply(
            &mut row,
            &input,
            &["kind", "name", "tags", "external_id", "resource_kind"],
            &mut v,
        );
        v.check(
            req.request_id.chars().count() <= 64,
            "request_id",
            "at most 64 characters",
        );
        v.finish()?;
        let hash = fingerprint(&(
            &row.account_id,
            &row.kind,
            &row.name,
            &row.tags,
            &row.external_id,
            row.resource_kind,
        ));
        let request =
            (!req.request_id.is_empty()).then_some((req.request_id.as_str(), hash.as_str()));
        let row = app::register_service(self, &principal, row, request).await?;
        Ok(pb::RegisterServiceResponse {
            service: Some(service_pb(&row, 0)),
        })
    }

    pub(super) async fn do_update_service(
        &self,
        request: tonic::Request<pb::UpdateServiceRequest>,
    ) -> Result<pb::UpdateServiceResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let req = request.into_inner();
        let paths = mask_paths(
            req.update_mask.as_ref(),
            &["kind", "name", "tags", "external_id", "resource_kind"],
        )?;
        let input = req.service.unwrap_or_default();
        let id = ServiceId::parse("service.id", &input.id)?;
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let row = app::update_service(self, &principal, &id, |row| {
            let mut v = Violations::default();
            apply(row, &input, &refs, &mut v);
            v.finish()
        })
        .await?;
        Ok(pb::UpdateServiceResponse {
            service: Some(service_pb(&row, 0)),
        })
    }

    pub(super) async fn do_delete_service(
        &self,
        request: tonic::Request<pb::DeleteServiceRequest>,
    ) -> Result<pb::DeleteServiceResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let id = ServiceId::parse("service_id", &request.get_ref().service_id)?;
        app::delete_service(self, &principal, &id).await?;
        Ok(pb::DeleteServiceResponse {})
    }

    pub(super) async fn do_list_services(
        &self,
        request: tonic::Request<pb::ListServicesRequest>,
    ) -> Result<pb::ListServicesResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let mut v = Violations::default();
        super::at_most("tags", req.tags.len(), super::limits::TAG_FILTERS)?;
        let filter_tags: Vec<String> = req
            .tags
            .iter()
            .enumerate()
            .filter_map(|(k, t)| v.take(&format!("tags[{k}]"), validate::tag(t)))
            .collect();
        v.check(
            pb::ResourceKind::try_from(req.resource_kind).is_ok(),
            "resource_kind",
            "must be SERVER, STORAGE or OTHER (or unset)",
        );
        v.finish()?;
        let f = fingerprint(&(
            &req.kind,
            &filter_tags,
            req.min_access_level,
            req.resource_kind,
        ));
        let cursor = decode_page_token_for::<Token>(&req.page_token, |t| t.f == f)?;
        let scope = store::scope(&self.db, &caller.member).await?;
        let facts = caller.member.access_facts();
        let query = store::ServiceQuery {
            kind: &req.kind,
            resource_kind: req.resource_kind,
            tags: &filter_tags,
            reachable_by: (!access::reaches_all_services(facts)).then_some(&caller.user_id),
            after: cursor.as_ref().map(|c| (c.name.as_str(), c.id.as_str())),
            limit: size + 1,
        };
        let rows = store::list_services(&self.db, &caller.account_id, &query).await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<ServiceRow> = rows
            .into_iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .collect();
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => encode_page_token(&Token {
                f,
                name: last.name.clone(),
                id: last.id.to_string(),
            }),
            _ => String::new(),
        };
        let services = rows
            .iter()
            .map(|r| (r, level_on(&caller, &scope, r)))
            .filter(|(_, l)| *l > Level::None && l.code() >= req.min_access_level)
            .map(|(r, l)| service_pb(r, l.code()))
            .collect();
        Ok(pb::ListServicesResponse {
            services,
            next_page_token,
        })
    }

    pub(super) async fn do_get_service(
        &self,
        request: tonic::Request<pb::GetServiceRequest>,
    ) -> Result<pb::GetServiceResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let id = ServiceId::parse("service_id", &request.get_ref().service_id)?;
        let row = ServiceRow::load(&self.db, &id)
            .await?
            .filter(|r| r.account_id == caller.account_id)
            .ok_or(AccountError::ServiceNotFound)?;
        let scope = store::scope(&self.db, &caller.member).await?;
        let l = level_on(&caller, &scope, &row);
        if l == Level::None {
            return Err(AccountError::ServiceNotFound.into());
        }
        Ok(pb::GetServiceResponse {
            service: Some(service_pb(&row, l.code())),
        })
    }
}
