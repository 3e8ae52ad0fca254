//! SupportStaffService: the support team's queue and ticket work, under
//! each account's support-access grant; every call is audited.

use std::collections::BTreeSet;

use tenancy_proto::support::{self as pb, support_staff_service_server::SupportStaffService};
use tenancy_runtime::error::Violations;
use tenancy_runtime::{Error, Reason, ids};
use tonic::Request;

use super::{Api, Reply, caller, convert, enum_list, filter_hash, list_messages, ok, optional_id};
use crate::app::{Side, ticket_id};
use crate::domain::{ActorKind, Category, Priority, Status, SupportError};
use crate::peers::CodeWordOutcome;
use crate::store::NewMessage;
use crate::store::list::{Accounts, Cursor, Order, TicketQuery};

#[tonic::async_trait]
impl SupportStaffService for Api {
    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Reply<pb::ListQueueResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let mut v = Violations::default();
        let statuses = enum_list("statuses", &r.statuses, Status::from_i32, &mut v);
        let priorities = enum_list("priorities", &r.priorities, Priority::from_i32, &mut v);
        let categories = enum_list("categories", &r.categories, Category::from_i32, &mut v);
        let account = optional_id("account_id", &r.account_id, &mut v);
        let assignee = optional_id("assignee_user_id", &r.assignee_user_id, &mut v);
        v.check(
            !(assignee.is_some() && r.unassigned_only),
            "unassigned_only",
            "cannot be combined with assignee_user_id",
        );
        let order = match r.order_by {
            0 => Some(Order::PriorityDesc),
            n => Order::from_i32(n),
        };
        v.check(order.is_some(), "order_by", "unknown order");
        let limit = v.take(
            "page_size",
            ids::page_size(r.page_size).map_err(|e| e.message),
        );
        v.finish()?;
        let order = order.unwrap_or(Order::PriorityDesc);
        let hash = filter_hash(&[
            format!("{statuses:?}{priorities:?}{categories:?}"),
            format!("{account:?}{assignee:?}{}", r.unassigned_only),
            (order as i32).to_string(),
        ]);
        let after = ids::decode_page_token_for::<Cursor>(&r.page_token, |c| c.f == hash)?;
        let accounts = match &account {
            Some(a) => {
                self.app.require_grant(a).await?;
                Accounts::One(a.clone())
            }
            None => Accounts::Many(self.app.peers.granted_accounts().await?),
        };
        if matches!(&accounts, Accounts::Many(a) if a.is_empty()) {
            return ok(pb::ListQueueResponse::default());
        }
        let query = TicketQuery {
            accounts,
            visible_services: None,
            service_id: None,
            general_only: false,
            statuses,
            priorities,
            categories,
            created_by: None,
            assignee,
            unassigned_only: r.unassigned_only,
            order,
            after,
            limit: limit.unwrap_or(ids::DEFAULT_PAGE_SIZE),
        };
        let (tickets, next) = self.app.store.list_tickets(&query).await?;
        // Audit the read once per account whose tickets were shown.
        let shown: BTreeSet<&str> = tickets.iter().map(|t| t.row.account_id.as_str()).collect();
        for account_id in shown {
            self.app
                .audit_staff(&p, account_id, "ticket.list", "", None)
                .await?;
        }
        ok(pb::ListQueueResponse {
            tickets: tickets
                .iter()
                .map(|t| convert::ticket(t, Side::Staff))
                .collect(),
            next_page_token: next
                .map(|mut c| {
                    c.f = hash.clone();
                    ids::encode_page_token(&c)
                })
                .unwrap_or_default(),
        })
    }

    async fn get_ticket(
        &self,
        request: Request<pb::SupportStaffServiceGetTicketRequest>,
    ) -> Reply<pb::SupportStaffServiceGetTicketResponse> {
        let p = caller(&request)?;
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&request.get_ref().ticket_id)?)
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.read",
                &ticket.row.id,
                None,
            )
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
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let (messages, next_page_token) = list_messages(
            &self.app,
            &ticket.row.id,
            r.after_message_sequence,
            !r.exclude_internal,
            r.newest_first,
            r.page_size,
            &r.page_token,
            Side::Staff,
        )
        .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.messages_read",
                &ticket.row.id,
                None,
            )
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
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let (written, message) = self
            .add_message_as(
                &p,
                &ticket,
                Side::Staff,
                r.body,
                status_after,
                false,
                &r.request_id,
            )
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.message_add",
                &ticket.row.id,
                Some(message.id.clone()),
            )
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
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let (written, note) = self
            .add_message_as(&p, &ticket, Side::Staff, r.body, None, true, &r.request_id)
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.note_add",
                &ticket.row.id,
                Some(note.id.clone()),
            )
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
        let me = p.user()?.to_owned();
        let assignee = match r.assignee {
            Some(Assignee::AssigneeUserId(raw)) => {
                let id = ids::parse_id("assignee_user_id", &raw)?;
                Some(id)
            }
            Some(Assignee::AssignToSelf(true)) => Some(me.clone()),
            Some(Assignee::Unassign(true)) => None,
            _ => {
                return Err(Error::invalid_field(
                    "assignee",
                    "set exactly one of assignee_user_id, assign_to_self or unassign (true)",
                )
                .into());
            }
        };
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        if let Some(a) = assignee.as_ref().filter(|a| **a != me) {
            let users = self.app.peers.users(vec![a.clone()]).await?;
            if !users.iter().any(|u| u.staff) {
                return Err(Error::new(
                    Reason::AssigneeNotStaff,
                    "the user is not on the support team",
                )
                .with_field("assignee_user_id", "not on the support team")
                .into());
            }
        }
        let after = self
            .app
            .store
            .assign(&ticket.row.id, assignee, r.only_if_unassigned)
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.assign",
                &ticket.row.id,
                None,
            )
            .await?;
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
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let written = self
            .change_status_as(&p, &ticket, Side::Staff, move |from| from.change_to(to))
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.set_status",
                &ticket.row.id,
                None,
            )
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
        let staff = p.user()?.to_owned();
        let mut v = Violations::default();
        let account = v.take(
            "account_id",
            ids::parse_id("account_id", &r.account_id).map_err(|_| "must be a UUID"),
        );
        let user = v.take(
            "user_id",
            ids::parse_id("user_id", &r.user_id).map_err(|_| "must be a UUID"),
        );
        v.check(!r.code_word.trim().is_empty(), "code_word", "required");
        v.finish()?;
        let (account, user) = (account.unwrap_or_default(), user.unwrap_or_default());
        let ticket = if r.ticket_id.is_empty() {
            None
        } else {
            let t = self
                .app
                .store
                .ticket(&ticket_id(&r.ticket_id)?)
                .await?
                .ok_or_else(|| Error::from(SupportError::TicketNotFound))?;
            if t.row.account_id != account {
                return Err(Error::new(
                    Reason::TicketAccountMismatch,
                    "the ticket belongs to another account",
                )
                .with_field("ticket_id", "belongs to another account")
                .into());
            }
            self.app.require_grant(&account).await?;
            Some(t)
        };
        if !self.app.peers.is_member(&user, &account).await? {
            return Err(Error::new(Reason::MemberNotFound, "no such member of the account").into());
        }
        let outcome = self
            .app
            .peers
            .verify_code_word(&user, r.code_word, &staff, &account)
            .await?;
        let (label, proto) = match outcome {
            CodeWordOutcome::Verified => ("VERIFIED", pb::VerifyCallerOutcome::Verified),
            CodeWordOutcome::Mismatch => ("MISMATCH", pb::VerifyCallerOutcome::Mismatch),
            CodeWordOutcome::NoCodeWord => ("NO_CODE_WORD", pb::VerifyCallerOutcome::NoCodeWord),
        };
        self.app
            .peers
            .audit(crate::peers::Audit {
                principal: &p,
                account_id: &account,
                action: "member.verify_caller",
                target_type: "member",
                target_id: &user,
                after: vec![
                    ("outcome", label.to_owned()),
                    ("ticket_id", r.ticket_id.clone()),
                ],
                idempotency_key: None,
            })
            .await?;
        if let Some(t) = ticket {
            self.app
                .store
                .add_message(
                    &t.row.id,
                    NewMessage {
                        author_kind: ActorKind::System,
                        author_user_id: None,
                        body: format!(
                            "Caller verification for user {user} by staff {staff}: {label}"
                        ),
                        internal: true,
                    },
                    Ok,
                    None,
                    self.app.clock.now(),
                )
                .await?;
        }
        ok(pb::VerifyCallerResponse {
            verified: outcome == CodeWordOutcome::Verified,
            outcome: proto as i32,
        })
    }
}
