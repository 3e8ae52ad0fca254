//! The service catalogue's queries.

use sea_orm::{ConnectionTrait, Value};
use tenancy_runtime::Error;
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::{AccountId, ServiceId, UserId};

use super::{SERVICE_COLUMNS, ServiceRow, n, s};
use crate::domain::GrantKind;

/// Which services a ListServices page reads.
#[derive(Clone, Debug, Default)]
pub struct ServiceQuery<'a> {
    /// Only this kind (when not empty).
    pub kind: &'a str,
    /// Only this `ResourceKind` code (when not 0).
    pub resource_kind: i32,
    /// Only services carrying every one of these tags.
    pub tags: &'a [String],
    /// Only services this member may reach through a selection, a resource
    /// grant or a tag grant (`None`: every service, for owners and ALL
    /// mode). A pre-filter for speed: the rule is
    /// `domain::access::service_level`, and a test proves the two agree.
    pub reachable_by: Option<&'a UserId>,
    /// Only services after this (name, id) in (name, id) order.
    pub after: Option<(&'a str, &'a str)>,
    /// At most this many.
    pub limit: u64,
}

/// The services of `account_id` matching `q`, in (name, id) order.
pub async fn list_services<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    q: &ServiceQuery<'_>,
) -> Result<Vec<ServiceRow>, Error> {
    let mut sql =
        format!("SELECT {SERVICE_COLUMNS} FROM account_services sv WHERE sv.account_id = $1");
    let mut values: Vec<Value> = vec![account_id.into()];
    if !q.kind.is_empty() {
        values.push(s(q.kind));
        sql.push_str(&format!(" AND sv.kind = ${}", values.len()));
    }
    if q.resource_kind != 0 {
        values.push(n(q.resource_kind));
        sql.push_str(&format!(" AND sv.resource_kind = ${}", values.len()));
    }
    for t in q.tags {
        values.push(s(t.as_str()));
        sql.push_str(&format!(" AND EXISTS (SELECT 1 FROM account_service_tags t WHERE t.service_id = sv.id AND t.tag = ${})", values.len()));
    }
    if let Some(user_id) = q.reachable_by {
        values.push(user_id.into());
        let u = values.len();
        values.push(n(GrantKind::Selected.code()));
        let selected = values.len();
        values.push(n(GrantKind::Resource.code()));
        let resource = values.len();
        values.push(n(GrantKind::Tag.code()));
        let tag = values.len();
        sql.push_str(&format!(
            " AND (sv.id IN (SELECT grant_key FROM account_member_grants WHERE account_id = $1 AND user_id = ${u} AND grant_kind IN (${selected}, ${resource})) \
             OR sv.id IN (SELECT t.service_id FROM account_service_tags t JOIN account_member_grants g ON g.grant_key = t.tag AND g.account_id = t.account_id WHERE g.account_id = $1 AND g.user_id = ${u} AND g.grant_kind = ${tag}))"
        ));
    }
    if let Some((name, id)) = q.after {
        values.push(s(name));
        let a = values.len();
        values.push(s(id));
        let b = values.len();
        sql.push_str(&format!(
            " AND (sv.name > ${a} OR (sv.name = ${a} AND sv.id > ${b}))"
        ));
    }
    sql.push_str(&format!(" ORDER BY sv.name, sv.id LIMIT {}", q.limit));
    all(c, &sql, values)
        .await?
        .iter()
        .map(ServiceRow::read)
        .collect()
}

/// The service of the account holding `external_id`, if any.
pub async fn service_with_external_id<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    external_id: &str,
) -> Result<Option<ServiceId>, Error> {
    let row = one(
        c,
        "SELECT id FROM account_services WHERE account_id = $1 AND external_id = $2",
        vec![account_id.into(), s(external_id)],
    )
    .await?;
    Ok(row.map(|r| get::<ServiceId>(&r, "id")).transpose()?)
}

/// Deletes a service with its tags and the grants naming it (selections
/// and resource grants); false when it did not exist.
pub async fn delete_service<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    service_id: &ServiceId,
) -> Result<bool, Error> {
    if exec(
        c,
        "DELETE FROM account_services WHERE id = $1",
        vec![service_id.into()],
    )
    .await?
        == 0
    {
        return Ok(false);
    }
    exec(
        c,
        "DELETE FROM account_service_tags WHERE service_id = $1",
        vec![service_id.into()],
    )
    .await?;
    exec(
        c,
        "DELETE FROM account_member_grants WHERE account_id = $1 AND grant_key = $2 AND grant_kind IN ($3, $4)",
        vec![
            account_id.into(),
            service_id.into(),
            n(GrantKind::Selected.code()),
            n(GrantKind::Resource.code()),
        ],
    )
    .await?;
    Ok(true)
}
