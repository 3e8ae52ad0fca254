//! SupportService: the customer side of tickets (members of the ticket's
//! account; staff acting on the selected account act as staff, audited).

use tenancy_proto::support::{self as pb, support_service_server::SupportService};
use tenancy_runtime::Error;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{self, AccountId, UserId};
use tonic::Request;

use super::watch::WatchStream;
use super::{
    Api, Reply, add_message, caller, convert, enum_filters, list_messages, next_ticket_token, ok,
    optional_id, order_and_size, request_key, ticket_id, ticket_page, user_list,
};
use crate::app::{Side, messages, tickets};
use crate::domain::validate;
use crate::domain::{Category, Priority, Status};
use crate::store::NewTicket;
use crate::store::list::{Accounts, Order, TicketQuery};

#[tonic::async_trait]
impl SupportService for Api {
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Reply<pb::CreateTicketResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let user = UserId::trusted(p.user()?);
        let account = AccountId::trusted(p.account()?);
        let mut v = Violations::default();
        let subject = v.take("subject", validate::subject(&r.subject));
        if let Err(e) = validate::body(&r.body) {
            v.add("body", e);
        }
        let priority = Priority::from_i32(r.priority);
        v.check(
            priority.is_some(),
            "priority",
            "required: LOW, NORMAL, HIGH or URGENT",
        );
        let category = Category::from_i32(r.category);
        v.check(
            category.is_some(),
            "category",
            "required: GENERAL, TECHNICAL or BILLING",
        );
        let service_id = optional_id("service_id", &r.service_id, ids::parse_id, &mut v);
        let mut cc = user_list("cc_user_ids", &r.cc_user_ids, &mut v);
        cc.retain(|(_, id)| *id != user);
        let key = request_key(
            &user,
            &r.request_id,
            &["ticket", &r.subject, &r.body],
            &mut v,
        );
        v.finish()?;
        let (Some(priority), Some(category)) = (priority, category) else {
            return Err(Error::invalid_field("priority", "required").into());
        };
        let (ticket, message) = tickets::create(
            &self.app,
            NewTicket {
                account_id: account,
                subject: subject.unwrap_or_default(),
                service_id,
                category,
                priority,
                created_by_user_id: user,
                body: r.body,
                cc,
            },
            key,
        )
        .await?;
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
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let (side, ticket) = self.app.shared_ticket(&p, &id).await?;
        self.app
            .audit_if_staff(&p, side, &ticket, "ticket.read", None)
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
        let user = UserId::trusted(p.user()?);
        let account = AccountId::trusted(p.account()?);
        let mut v = Violations::default();
        let enums = enum_filters(&r.statuses, &r.priorities, &r.categories, &mut v);
        let service_id = optional_id("service_id", &r.service_id, ids::parse_id, &mut v);
        let created_by = optional_id(
            "created_by_user_id",
            &r.created_by_user_id,
            UserId::parse,
            &mut v,
        );
        v.check(
            !(service_id.is_some() && r.account_general_only),
            "account_general_only",
            "cannot be combined with service_id",
        );
        let (order, limit) = order_and_size(r.order_by, Order::UpdateDesc, r.page_size, &mut v);
        v.finish()?;
        let (hash, after) = ticket_page(
            &enums,
            format!(
                "{:?}{:?}{}",
                service_id,
                created_by.as_ref().map(UserId::as_str),
                r.account_general_only
            ),
            order,
            &r.page_token,
        )?;
        let query = TicketQuery {
            accounts: Accounts::One(account.clone()),
            visible_services: None,
            service_id,
            general_only: r.account_general_only,
            statuses: enums.statuses,
            priorities: enums.priorities,
            categories: enums.categories,
            created_by,
            assignee: None,
            unassigned_only: false,
            order,
            after,
            limit,
        };
        let (tickets, next) = tickets::list(&self.app, &user, &account, query).await?;
        ok(pb::ListTicketsResponse {
            tickets: tickets
                .iter()
                .map(|t| convert::ticket(t, Side::Customer))
                .collect(),
            next_page_token: next_ticket_token(next, &hash),
        })
    }

    async fn add_message(
        &self,
        request: Request<pb::AddMessageRequest>,
    ) -> Reply<pb::AddMessageResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let id = ticket_id(&r.ticket_id)?;
        let (side, ticket) = self.app.shared_ticket(&p, &id).await?;
        let (written, message) = add_message(
            &self.app,
            &p,
            &ticket,
            side,
            r.body,
            None,
            false,
            &r.request_id,
        )
        .await?;
        self.app
            .audit_if_staff(
                &p,
                side,
                &ticket,
                "ticket.message_add",
                Some(message.id.to_string()),
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
        let id = ticket_id(&r.ticket_id)?;
        let (side, ticket) = self.app.shared_ticket(&p, &id).await?;
        let (messages, next_page_token) = list_messages(
            &self.app,
            &id,
            r.after_message_sequence,
            false,
            r.newest_first,
            r.page_size,
            &r.page_token,
            Side::Customer,
        )
        .await?;
        self.app
            .audit_if_staff(&p, side, &ticket, "ticket.messages_read", None)
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
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let (side, ticket) = self.app.shared_ticket(&p, &id).await?;
        let written = messages::change_status(&self.app, &p, &ticket, side, |from| {
            from.change_to(Status::Closed)
        })
        .await?;
        self.app
            .audit_if_staff(&p, side, &ticket, "ticket.close", None)
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
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let (side, ticket) = self.app.shared_ticket(&p, &id).await?;
        let written = messages::change_status(&self.app, &p, &ticket, side, |from| {
            from.change_to(Status::Open)
        })
        .await?;
        self.app
            .audit_if_staff(&p, side, &ticket, "ticket.reopen", None)
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
        let mut v = Violations::default();
        let add = user_list("add_user_ids", &r.add_user_ids, &mut v);
        let remove = user_list("remove_user_ids", &r.remove_user_ids, &mut v);
        v.finish()?;
        let remove: Vec<UserId> = remove.into_iter().map(|(_, id)| id).collect();
        let id = ticket_id(&r.ticket_id)?;
        let ticket = self.app.customer_ticket(&p, &id).await?;
        let account = AccountId::trusted(p.account()?);
        let after = tickets::update_cc(&self.app, &account, &ticket, &add, &remove).await?;
        ok(pb::UpdateTicketCcResponse {
            ticket: Some(convert::ticket(&after, Side::Customer)),
        })
    }
}
