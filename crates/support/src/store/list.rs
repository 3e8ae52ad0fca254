//! Ticket lists: filters, orders and keyset pagination.
//!
//! Every order ends with `id` in the direction of its last key, so a page
//! boundary is a strict tuple comparison expanded into
//! `k1 > v1 OR (k1 = v1 AND (k2 > v2 OR ...))` with each `>` or `<` per
//! key direction. The `(account_id, <order keys>, id)` indexes serve them.

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::{Deserialize, Serialize};
use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};

use super::entities::ticket::{self, Column};
use super::{Store, Ticket, TicketRow};
use crate::domain::{Category, Priority, Status};

/// The sort orders (proto `TicketOrder` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Oldest first.
    CreateAsc = 1,
    /// Newest first.
    CreateDesc = 2,
    /// Least recently updated first.
    UpdateAsc = 3,
    /// Most recently updated first.
    UpdateDesc = 4,
    /// Lowest priority, then most recently updated.
    PriorityAsc = 5,
    /// Highest priority, then longest waiting.
    PriorityDesc = 6,
}

impl Order {
    /// The order with proto value `value` (not UNSPECIFIED).
    pub(crate) fn from_i32(value: i32) -> Option<Self> {
        use Order::*;
        [
            CreateAsc,
            CreateDesc,
            UpdateAsc,
            UpdateDesc,
            PriorityAsc,
            PriorityDesc,
        ]
        .into_iter()
        .find(|o| *o as i32 == value)
    }

    /// The keys with their directions (true: ascending); `id` follows in
    /// the direction of the last.
    fn keys(self) -> &'static [(Column, bool)] {
        match self {
            Order::CreateAsc => &[(Column::CreateTime, true)],
            Order::CreateDesc => &[(Column::CreateTime, false)],
            Order::UpdateAsc => &[(Column::UpdateTime, true)],
            Order::UpdateDesc => &[(Column::UpdateTime, false)],
            Order::PriorityAsc => &[(Column::Priority, true), (Column::UpdateTime, false)],
            Order::PriorityDesc => &[(Column::Priority, false), (Column::UpdateTime, true)],
        }
    }
}

fn key_value(row: &TicketRow, column: Column) -> i64 {
    match column {
        Column::CreateTime => row.create_time,
        Column::UpdateTime => row.update_time,
        Column::Priority => i64::from(row.priority),
        _ => 0,
    }
}

/// Where the next page starts, inside an opaque page token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Hash of the filters and order the token was issued for.
    pub(crate) f: String,
    /// The last row's key values.
    pub(crate) k: Vec<i64>,
    /// The last row's id.
    pub(crate) id: String,
}

/// Which accounts a list covers.
#[derive(Clone, Debug)]
pub(crate) enum Accounts {
    /// One account (customers, or staff naming one).
    One(AccountId),
    /// Several (the staff queue: accounts with an active grant).
    Many(Vec<AccountId>),
}

/// A ticket list query.
#[derive(Clone, Debug)]
pub(crate) struct TicketQuery {
    /// The accounts.
    pub(crate) accounts: Accounts,
    /// Visibility: `Some(ids)` limits to account-general tickets and these
    /// services'; `None` does not limit.
    pub(crate) visible_services: Option<Vec<String>>,
    /// Only this service.
    pub(crate) service_id: Option<String>,
    /// Only account-general tickets.
    pub(crate) general_only: bool,
    /// Statuses (OR).
    pub(crate) statuses: Vec<Status>,
    /// Priorities (OR).
    pub(crate) priorities: Vec<Priority>,
    /// Categories (OR).
    pub(crate) categories: Vec<Category>,
    /// Only tickets this user created.
    pub(crate) created_by: Option<UserId>,
    /// Only tickets assigned to this staff user.
    pub(crate) assignee: Option<UserId>,
    /// Only unassigned tickets.
    pub(crate) unassigned_only: bool,
    /// The order.
    pub(crate) order: Order,
    /// Where to continue.
    pub(crate) after: Option<Cursor>,
    /// Page size.
    pub(crate) limit: u64,
}

impl TicketQuery {
    /// The page query: filters, keyset and order (limit added by callers).
    pub(crate) fn select(&self) -> Select<ticket::Entity> {
        let query = self;
        let mut select = ticket::Entity::find();
        select = match &query.accounts {
            Accounts::One(id) => select.filter(Column::AccountId.eq(id.as_str())),
            Accounts::Many(ids) => {
                select.filter(Column::AccountId.is_in(ids.iter().map(AccountId::as_str)))
            }
        };
        if let Some(visible) = &query.visible_services {
            let mut cond = Condition::any().add(Column::ServiceId.is_null());
            if !visible.is_empty() {
                cond = cond.add(Column::ServiceId.is_in(visible.clone()));
            }
            select = select.filter(cond);
        }
        if let Some(service) = &query.service_id {
            select = select.filter(Column::ServiceId.eq(service.clone()));
        }
        if query.general_only {
            select = select.filter(Column::ServiceId.is_null());
        }
        if !query.statuses.is_empty() {
            select = select.filter(Column::Status.is_in(query.statuses.iter().map(|s| *s as i32)));
        }
        if !query.priorities.is_empty() {
            select =
                select.filter(Column::Priority.is_in(query.priorities.iter().map(|p| *p as i32)));
        }
        if !query.categories.is_empty() {
            select =
                select.filter(Column::Category.is_in(query.categories.iter().map(|c| *c as i32)));
        }
        if let Some(user) = &query.created_by {
            select = select.filter(Column::CreatedByUserId.eq(user.as_str()));
        }
        if let Some(user) = &query.assignee {
            select = select.filter(Column::AssigneeUserId.eq(user.as_str()));
        }
        if query.unassigned_only {
            select = select.filter(Column::AssigneeUserId.is_null());
        }
        let keys = query.order.keys();
        let id_ascending = keys.last().is_some_and(|(_, asc)| *asc);
        if let Some(cursor) = &query.after {
            select = select.filter(after_condition(keys, id_ascending, cursor));
        }
        for (column, ascending) in keys {
            select = if *ascending {
                select.order_by_asc(*column)
            } else {
                select.order_by_desc(*column)
            };
        }
        if id_ascending {
            select.order_by_asc(Column::Id)
        } else {
            select.order_by_desc(Column::Id)
        }
    }
}

impl Store {
    /// One page of tickets and the cursor of the next page (its `f` left
    /// for the caller to fill in).
    pub(crate) async fn list_tickets(
        &self,
        query: &TicketQuery,
    ) -> Result<(Vec<Ticket>, Option<Cursor>), Error> {
        let keys = query.order.keys();
        let select = query.select();
        let mut rows = select.limit(query.limit + 1).all(self.db()).await?;
        let next = if rows.len() as u64 > query.limit {
            rows.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
            rows.last().map(|last| Cursor {
                f: String::new(),
                k: keys.iter().map(|(c, _)| key_value(last, *c)).collect(),
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok((self.cc_of(rows).await?, next))
    }
}

/// Rows strictly after the cursor in the order.
fn after_condition(keys: &[(Column, bool)], id_ascending: bool, cursor: &Cursor) -> Condition {
    // Innermost: all keys equal and id beyond.
    let mut cond = Condition::all().add(if id_ascending {
        Column::Id.gt(cursor.id.clone())
    } else {
        Column::Id.lt(cursor.id.clone())
    });
    for (i, (column, ascending)) in keys.iter().enumerate().rev() {
        let value = cursor.k.get(i).copied().unwrap_or_default();
        let beyond = if *ascending {
            column.gt(value)
        } else {
            column.lt(value)
        };
        cond = Condition::any()
            .add(beyond)
            .add(Condition::all().add(column.eq(value)).add(cond));
    }
    cond
}
