//! SupportService: the customer side of tickets (members of the ticket's
//! account; staff acting on the selected account act as staff, audited).

use std::collections::BTreeSet;

use tenancy_proto::support::{self as pb, support_service_server::SupportService};
use tenancy_runtime::error::Violations;
use tenancy_runtime::{Error, Reason, ids};
use tonic::Request;

use super::watch::WatchStream;
use super::{
    Api, Reply, caller, convert, enum_list, filter_hash, list_messages, ok, optional_id,
    request_key,
};
use crate::app::{Event, Side, ticket_id};
use crate::domain::validate::{self, MAX_CC};
use crate::domain::{Category, Priority, Status, SupportError, Visibility};
use crate::store::NewTicket;
use crate::store::list::{Accounts, Cursor, Order, TicketQuery};

#[tonic::async_trait]
impl SupportService for Api {
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Reply<pb::CreateTicketResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let user = p.user()?.to_owned();
        let account = p.account()?.to_owned();
        let mut v = Violations::default();
        let subject = v.take("subject", validate::subject(&r.subject));
        if let Err(e) = validate::body(&r.body) {
            v.add("body", e);
        }
        v.check(
            Priority::from_i32(r.priority).is_some(),
            "priority",
            "required: LOW, NORMAL, HIGH or URGENT",
        );
        v.check(
            Category::from_i32(r.category).is_some(),
            "category",
            "required: GENERAL, TECHNICAL or BILLING",
        );
        let service_id = optional_id("service_id", &r.service_id, &mut v);
        let mut cc: BTreeSet<String> = BTreeSet::new();
        for (i, raw) in r.cc_user_ids.iter().enumerate() {
            if let Some(id) = v.take(
                &format!("cc_user_ids[{i}]"),
                ids::parse_id("cc_user_ids", raw).map_err(|_| "must be a UUID"),
            ) && id != user
            {
                cc.insert(id);
            }
        }
        if cc.len() > MAX_CC {
            return Err(Error::new(Reason::CcLimitExceeded, "at most 20 CC users")
                .with_field("cc_user_ids", "at most 20 CC users")
                .into());
        }
        let key = request_key(
            &user,
            &r.request_id,
            &["ticket", &r.subject, &r.body],
            &mut v,
        );
        v.finish()?;
        let subject = subject.unwrap_or_default();
        // The creator must see the ticket: the service must be one they reach.
        let visibility = self
            .app
            .peers
            .visibility(&user, &account, service_id.iter().cloned().collect(), false)
            .await?;
        if visibility == Visibility::Nothing {
            return Err(
                Error::new(Reason::NotAMember, "not an active member of the account").into(),
            );
        }
        if !visibility.sees(service_id.as_deref()) {
            return Err(Error::from(SupportError::ServiceNotFound).into());
        }
        for (i, cc_user) in cc.iter().enumerate() {
            let theirs = self
                .app
                .peers
                .visibility(
                    cc_user,
                    &account,
                    service_id.iter().cloned().collect(),
                    false,
                )
                .await?;
            if !theirs.sees(service_id.as_deref()) {
                return Err(Error::new(
                    Reason::CcUserNotEligible,
                    "a CC user is not an active member who may see the ticket",
                )
                .with_field(
                    format!("cc_user_ids[{i}]"),
                    "not an active member who may see the ticket",
                )
                .into());
            }
        }
        let (ticket, message) = self
            .app
            .store
            .create_ticket(
                NewTicket {
                    account_id: account,
                    subject,
                    service_id,
                    category: r.category,
                    priority: r.priority,
                    created_by_user_id: user,
                    body: r.body,
                    cc: cc.into_iter().collect(),
                },
                key,
                self.app.clock.now(),
            )
            .await?;
        self.app.notify_message(&ticket, &message, true);
        ok(pb::CreateTicketResponse {
            ticket: Some(convert::ticket(&ticket, Side::Customer)),
            message: Some(convert::message(&message, Side::Customer)),
        })
    }

    async fn get_ticket(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Reply<pb::GetTicketResponse> {
        let p = caller(&request)?;
        let (side, ticket) = self.shared_ticket(&p, &request.get_ref().ticket_id).await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.read", None)
            .await?;
        ok(pb::GetTicketResponse {
            ticket: Some(convert::ticket(&ticket, Side::Customer)),
        })
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Reply<pb::ListTicketsResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let user = p.user()?.to_owned();
        let account = p.account()?.to_owned();
        let mut v = Violations::default();
        let statuses = enum_list("statuses", &r.statuses, Status::from_i32, &mut v);
        let priorities = enum_list("priorities", &r.priorities, Priority::from_i32, &mut v);
        let categories = enum_list("categories", &r.categories, Category::from_i32, &mut v);
        let service_id = optional_id("service_id", &r.service_id, &mut v);
        let created_by = optional_id("created_by_user_id", &r.created_by_user_id, &mut v);
        v.check(
            !(service_id.is_some() && r.account_general_only),
            "account_general_only",
            "cannot be combined with service_id",
        );
        let order = match r.order_by {
            0 => Some(Order::UpdateDesc),
            n => Order::from_i32(n),
        };
        v.check(order.is_some(), "order_by", "unknown order");
        let limit = v.take(
            "page_size",
            ids::page_size(r.page_size).map_err(|e| e.message),
        );
        v.finish()?;
        let order = order.unwrap_or(Order::UpdateDesc);
        let hash = filter_hash(&[
            format!("{statuses:?}{priorities:?}{categories:?}"),
            format!("{service_id:?}{created_by:?}{}", r.account_general_only),
            (order as i32).to_string(),
        ]);
        let after = ids::decode_page_token_for::<Cursor>(&r.page_token, |c| c.f == hash)?;
        // ONE access decision for the whole list.
        let visibility = self.app.list_visibility(&user, &account).await?;
        if visibility == Visibility::Nothing {
            return ok(pb::ListTicketsResponse::default());
        }
        let query = TicketQuery {
            accounts: Accounts::One(account),
            visible_services: visibility.service_filter(),
            service_id,
            general_only: r.account_general_only,
            statuses,
            priorities,
            categories,
            created_by,
            assignee: None,
            unassigned_only: false,
            order,
            after,
            limit: limit.unwrap_or(ids::DEFAULT_PAGE_SIZE),
        };
        let (tickets, next) = self.app.store.list_tickets(&query).await?;
        ok(pb::ListTicketsResponse {
            tickets: tickets
                .iter()
                .map(|t| convert::ticket(t, Side::Customer))
                .collect(),
            next_page_token: next
                .map(|mut c| {
                    c.f = hash.clone();
                    ids::encode_page_token(&c)
                })
                .unwrap_or_default(),
        })
    }

    async fn add_message(
        &self,
        request: Request<pb::AddMessageRequest>,
    ) -> Reply<pb::AddMessageResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let (side, ticket) = self.shared_ticket(&p, &r.ticket_id).await?;
        let (written, message) = self
            .add_message_as(&p, &ticket, side, r.body, None, false, &r.request_id)
            .await?;
        self.audit_if_staff(
            &p,
            side,
            &ticket,
            "ticket.message_add",
            Some(message.id.clone()),
        )
        .await?;
        ok(pb::AddMessageResponse {
            message: Some(convert::message(&message, Side::Customer)),
            ticket: Some(convert::ticket(&written.ticket, Side::Customer)),
        })
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Reply<pb::ListMessagesResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let (side, ticket) = self.shared_ticket(&p, &r.ticket_id).await?;
        let (messages, next_page_token) = list_messages(
            &self.app,
            &ticket.row.id,
            r.after_message_sequence,
            false,
            r.newest_first,
            r.page_size,
            &r.page_token,
            Side::Customer,
        )
        .await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.messages_read", None)
            .await?;
        ok(pb::ListMessagesResponse {
            messages,
            next_page_token,
        })
    }

    async fn close_ticket(
        &self,
        request: Request<pb::CloseTicketRequest>,
    ) -> Reply<pb::CloseTicketResponse> {
        let p = caller(&request)?;
        let (side, ticket) = self.shared_ticket(&p, &request.get_ref().ticket_id).await?;
        let written = self
            .change_status_as(&p, &ticket, side, |from| from.change_to(Status::Closed))
            .await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.close", None)
            .await?;
        ok(pb::CloseTicketResponse {
            ticket: Some(convert::ticket(&written.ticket, Side::Customer)),
        })
    }

    async fn reopen_ticket(
        &self,
        request: Request<pb::ReopenTicketRequest>,
    ) -> Reply<pb::ReopenTicketResponse> {
        let p = caller(&request)?;
        let (side, ticket) = self.shared_ticket(&p, &request.get_ref().ticket_id).await?;
        let written = self
            .change_status_as(&p, &ticket, side, |from| from.change_to(Status::Open))
            .await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.reopen", None)
            .await?;
        ok(pb::ReopenTicketResponse {
            ticket: Some(convert::ticket(&written.ticket, Side::Customer)),
        })
    }

    async fn watch_ticket(&self, request: Request<pb::WatchTicketRequest>) -> Reply<WatchStream> {
        self.open_watch(request).await
    }

    async fn update_ticket_cc(
        &self,
        request: Request<pb::UpdateTicketCcRequest>,
    ) -> Reply<pb::UpdateTicketCcResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let id = ticket_id(&r.ticket_id)?;
        let ticket = self.app.customer_ticket(&p, &id).await?;
        let account = p.account()?.to_owned();
        let mut v = Violations::default();
        let parse = |field: &str, list: &[String], v: &mut Violations| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(i, raw)| {
                    v.take(
                        &format!("{field}[{i}]"),
                        ids::parse_id(field, raw).map_err(|_| "must be a UUID"),
                    )
                })
                .collect()
        };
        let add = parse("add_user_ids", &r.add_user_ids, &mut v);
        let remove = parse("remove_user_ids", &r.remove_user_ids, &mut v);
        v.finish()?;
        for (i, user) in add.iter().enumerate() {
            if ticket.cc.contains(user) && !remove.contains(user) {
                continue;
            }
            let theirs = self
                .app
                .peers
                .visibility(
                    user,
                    &account,
                    ticket.row.service_id.iter().cloned().collect(),
                    false,
                )
                .await?;
            if !theirs.sees(ticket.row.service_id.as_deref()) {
                return Err(Error::new(
                    Reason::CcUserNotEligible,
                    "a user is not an active member who may see the ticket",
                )
                .with_field(
                    format!("add_user_ids[{i}]"),
                    "not an active member who may see the ticket",
                )
                .into());
            }
        }
        let outcome = self
            .app
            .store
            .update_cc(&id, &remove, &add, MAX_CC, self.app.clock.now())
            .await?;
        let (after, changed) = match outcome {
            Ok(done) => done,
            Err(_) => {
                return Err(Error::new(Reason::CcLimitExceeded, "at most 20 CC users")
                    .with_field("add_user_ids", "at most 20 CC users")
                    .into());
            }
        };
        if changed {
            self.app.publish(
                &id,
                Event::Updated {
                    ticket: Box::new(after.clone()),
                    fields: vec!["cc_user_ids".to_owned()],
                },
            );
        }
        ok(pb::UpdateTicketCcResponse {
            ticket: Some(convert::ticket(&after, Side::Customer)),
        })
    }
}
