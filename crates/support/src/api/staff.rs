//! SupportStaffService: the support team's queue and ticket work, under
//! each account's support-access grant; every call is audited.

use tenancy_proto::support::{self as pb, support_staff_service_server::SupportStaffService};
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Principal};
use tonic::Request;

use super::{
    Api, Reply, add_message, caller, convert, enum_filters, list_messages, next_ticket_token, ok,
    optional_id, order_and_size, ticket_id, ticket_page,
};
use crate::app::staff::{self, CallerCheck};
use crate::app::{Side, messages};
use crate::domain::Status;
use crate::domain::validate::MAX_CODE_WORD_CHARS;
use crate::peers::CodeWordOutcome;
use crate::store::list::{Accounts, Order, TicketQuery};
use crate::store::{TicketMessage, Written};

impl Api {
    /// A staff reply (or internal note) on a ticket whose account granted
    /// access, audited.
    async fn staff_write(
        &self,
        p: &Principal,
        raw_ticket_id: &str,
        body: String,
        status_after: Option<Status>,
        internal: bool,
        request_id: &str,
    ) -> Result<(Written, TicketMessage), Error> {
        let id = ticket_id(raw_ticket_id)?;
        let ticket = self.app.staff_ticket(None, &id).await?;
        let (written, message) = add_message(
            &self.app,
            p,
            &ticket,
            Side::Staff,
            body,
            status_after,
            internal,
            request_id,
        )
        .await?;
        let action = if internal {
            "ticket.note_add"
        } else {
            "ticket.message_add"
        };
        self.app
            .audit_if_staff(
                p,
                Side::Staff,
                &ticket,
                action,
                Some(message.id.to_string()),
            )
            .await?;
        Ok((written, message))
    }
}

#[tonic::async_trait]
impl SupportStaffService for Api {
    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Reply<pb::ListQueueResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let mut v = Violations::default();
        let enums = enum_filters(&r.statuses, &r.priorities, &r.categories, &mut v);
        let account = optional_id("account_id", &r.account_id, AccountId::parse, &mut v);
        let assignee = optional_id(
            "assignee_user_id",
            &r.assignee_user_id,
            UserId::parse,
            &mut v,
        );
        v.check(
            !(assignee.is_some() && r.unassigned_only),
            "unassigned_only",
            "cannot be combined with assignee_user_id",
        );
        let (order, limit) = order_and_size(r.order_by, Order::PriorityDesc, r.page_size, &mut v);
        v.finish()?;
        let (hash, after) = ticket_page(
            &enums,
            format!(
                "{:?}{:?}{}",
                account.as_ref().map(AccountId::as_str),
                assignee.as_ref().map(UserId::as_str),
                r.unassigned_only
            ),
            order,
            &r.page_token,
        )?;
        let query = TicketQuery {
            accounts: Accounts::Many(Vec::new()),
            visible_services: None,
            service_id: None,
            general_only: false,
            statuses: enums.statuses,
            priorities: enums.priorities,
            categories: enums.categories,
            created_by: None,
            assignee,
            unassigned_only: r.unassigned_only,
            order,
            after,
            limit,
        };
        let (tickets, next) = staff::queue(&self.app, &p, account, query).await?;
        ok(pb::ListQueueResponse {
            tickets: tickets
                .iter()
                .map(|t| convert::ticket(t, Side::Staff))
                .collect(),
            next_page_token: next_ticket_token(next, &hash),
        })
    }

    async fn get_ticket(
        &self,
        request: Request<pb::SupportStaffServiceGetTicketRequest>,
    ) -> Reply<pb::SupportStaffServiceGetTicketResponse> {
        let p = caller(&request)?;
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let ticket = self.app.staff_ticket(None, &id).await?;
        self.app
            .audit_if_staff(&p, Side::Staff, &ticket, "ticket.read", None)
            .await?;
        ok(pb::SupportStaffServiceGetTicketResponse {
            ticket: Some(convert::ticket(&ticket, Side::Staff)),
        })
    }

    async fn list_messages(
        &self,
        request: Request<pb::SupportStaffServiceListMessagesRequest>,
    ) -> Reply<pb::SupportStaffServiceListMessagesResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let id = ticket_id(&r.ticket_id)?;
        let ticket = self.app.staff_ticket(None, &id).await?;
        let (messages, next_page_token) = list_messages(
            &self.app,
            &id,
            r.after_message_sequence,
            !r.exclude_internal,
            r.newest_first,
            r.page_size,
            &r.page_token,
            Side::Staff,
        )
        .await?;
        self.app
            .audit_if_staff(&p, Side::Staff, &ticket, "ticket.messages_read", None)
            .await?;
        ok(pb::SupportStaffServiceListMessagesResponse {
            messages,
            next_page_token,
        })
    }

    async fn add_message(
        &self,
        request: Request<pb::SupportStaffServiceAddMessageRequest>,
    ) -> Reply<pb::SupportStaffServiceAddMessageResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let status_after = match r.status_after {
            None => None,
            Some(raw) => match Status::from_i32(raw) {
                Some(s) if Status::is_staff_reply_target(s) => Some(s),
                _ => {
                    return Err(Error::invalid_field(
                        "status_after",
                        "must be AWAITING_CUSTOMER, AWAITING_SUPPORT or RESOLVED",
                    )
                    .into());
                }
            },
        };
        let (written, message) = self
            .staff_write(&p, &r.ticket_id, r.body, status_after, false, &r.request_id)
            .await?;
        ok(pb::SupportStaffServiceAddMessageResponse {
            message: Some(convert::message(&message, Side::Staff)),
            ticket: Some(convert::ticket(&written.ticket, Side::Staff)),
        })
    }

    async fn add_internal_note(
        &self,
        request: Request<pb::AddInternalNoteRequest>,
    ) -> Reply<pb::AddInternalNoteResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let (written, note) = self
            .staff_write(&p, &r.ticket_id, r.body, None, true, &r.request_id)
            .await?;
        ok(pb::AddInternalNoteResponse {
            note: Some(convert::message(&note, Side::Staff)),
            ticket: Some(convert::ticket(&written.ticket, Side::Staff)),
        })
    }

    async fn assign_ticket(
        &self,
        request: Request<pb::AssignTicketRequest>,
    ) -> Reply<pb::AssignTicketResponse> {
        use pb::assign_ticket_request::Assignee;
        let p = caller(&request)?;
        let r = request.into_inner();
        let me = UserId::trusted(p.user()?);
        let assignee = match r.assignee {
            Some(Assignee::AssigneeUserId(raw)) => Some(UserId::parse("assignee_user_id", &raw)?),
            Some(Assignee::AssignToSelf(true)) => Some(me),
            Some(Assignee::Unassign(true)) => None,
            _ => {
                return Err(Error::invalid_field(
                    "assignee",
                    "set exactly one of assignee_user_id, assign_to_self or unassign (true)",
                )
                .into());
            }
        };
        let id = ticket_id(&r.ticket_id)?;
        let after = staff::assign(&self.app, &p, &id, assignee, r.only_if_unassigned).await?;
        ok(pb::AssignTicketResponse {
            ticket: Some(convert::ticket(&after, Side::Staff)),
        })
    }

    async fn set_ticket_status(
        &self,
        request: Request<pb::SetTicketStatusRequest>,
    ) -> Reply<pb::SetTicketStatusResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let to = Status::from_i32(r.status)
            .ok_or_else(|| Error::invalid_field("status", "required: a TicketStatus"))?;
        let id = ticket_id(&r.ticket_id)?;
        let ticket = self.app.staff_ticket(None, &id).await?;
        let written = messages::change_status(&self.app, &p, &ticket, Side::Staff, move |from| {
            from.change_to(to)
        })
        .await?;
        self.app
            .audit_if_staff(&p, Side::Staff, &ticket, "ticket.set_status", None)
            .await?;
        ok(pb::SetTicketStatusResponse {
            ticket: Some(convert::ticket(&written.ticket, Side::Staff)),
        })
    }

    async fn verify_caller(
        &self,
        request: Request<pb::VerifyCallerRequest>,
    ) -> Reply<pb::VerifyCallerResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        p.user()?;
        let mut v = Violations::default();
        let account = v.take(
            "account_id",
            AccountId::parse("account_id", &r.account_id).map_err(|_| "must be a UUID"),
        );
        let user = v.take(
            "user_id",
            UserId::parse("user_id", &r.user_id).map_err(|_| "must be a UUID"),
        );
        v.check(!r.code_word.trim().is_empty(), "code_word", "required");
        v.check(
            r.code_word.chars().count() <= MAX_CODE_WORD_CHARS,
            "code_word",
            "at most 128 characters",
        );
        v.finish()?;
        let (Some(account), Some(user)) = (account, user) else {
            return Err(Error::invalid_field("account_id", "required").into());
        };
        let ticket = if r.ticket_id.is_empty() {
            None
        } else {
            Some((ticket_id(&r.ticket_id)?, r.ticket_id.clone()))
        };
        let outcome = staff::verify_caller(
            &self.app,
            &p,
            CallerCheck {
                account,
                user,
                code_word: r.code_word,
                ticket,
            },
        )
        .await?;
        ok(pb::VerifyCallerResponse {
            verified: outcome == CodeWordOutcome::Verified,
            outcome: match outcome {
                CodeWordOutcome::Verified => pb::VerifyCallerOutcome::Verified,
                CodeWordOutcome::Mismatch => pb::VerifyCallerOutcome::Mismatch,
                CodeWordOutcome::NoCodeWord => pb::VerifyCallerOutcome::NoCodeWord,
            } as i32,
        })
    }
}
