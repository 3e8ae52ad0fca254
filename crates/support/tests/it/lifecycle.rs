//! Creating tickets, validation, messages, the status transitions, CC
//! users, retries and pagination.

use std::time::Duration;

use tenancy_proto::support as pb;
use tenancy_runtime::Reason;
use tenancy_runtime::error::violated_fields;
use tonic::Code;

use crate::harness::{World, assert_refused, create, id};

use pb::TicketStatus as S;

#[tokio::test]
async fn a_new_ticket_is_open_with_its_first_message_stored_as_written() {
    let w = World::new("lc_create").await;
    let r = w
        .customer(&w.selected)
        .create_ticket(create(Some(&w.s1)))
        .await
        .unwrap()
        .into_inner();
    let (t, m) = (r.ticket.unwrap(), r.message.unwrap());
    assert_eq!(t.status, S::Open as i32);
    assert_eq!(t.message_count, 1);
    assert_eq!(t.last_message_sequence, 1);
    assert_eq!(t.created_by_user_id, w.selected);
    assert_eq!(m.sequence, 1);
    assert_eq!(m.body, "It hangs at <b>GRUB</b>.");
    assert_eq!(m.author_kind, pb::ActorKind::Customer as i32);
}

#[tokio::test]
async fn invalid_tickets_are_refused_with_every_field_named() {
    let w = World::new("lc_invalid").await;
    let status = w
        .customer(&w.owner)
        .create_ticket(pb::CreateTicketRequest {
            subject: "  ".into(),
            body: "x".repeat(64 * 1024 + 1),
            service_id: "not-a-uuid".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violated_fields(&status);
    for f in ["subject", "body", "priority", "category", "service_id"] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    let mut long = create(None);
    long.subject = "é".repeat(201);
    let status = w.customer(&w.owner).create_ticket(long).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["subject"]);
}

#[tokio::test]
async fn subjects_with_bidi_controls_are_refused() {
    let w = World::new("lc_bidi").await;
    for subject in [
        "Invoice \u{202E}fdp.exe",
        "Refund \u{2067}urgent\u{2069}",
        "Hi\u{061C}",
        "two\u{2028}lines",
    ] {
        let mut request = create(None);
        request.subject = subject.into();
        let status = w
            .customer(&w.owner)
            .create_ticket(request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{subject:?}");
        assert_eq!(violated_fields(&status), ["subject"], "{subject:?}");
    }
}

async fn staff_set(w: &World, t: &str, to: S) -> Result<pb::Ticket, tonic::Status> {
    w.staff()
        .set_ticket_status(pb::SetTicketStatusRequest {
            ticket_id: t.to_owned(),
            status: to as i32,
        })
        .await
        .map(|r| r.into_inner().ticket.unwrap())
}

async fn customer_says(w: &World, t: &str) -> Result<pb::Ticket, tonic::Status> {
    w.customer(&w.owner)
        .add_message(pb::AddMessageRequest {
            ticket_id: t.to_owned(),
            body: "any news?".into(),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().ticket.unwrap())
}

/// A ticket brought into `status`.
async fn ticket_in(w: &World, status: S) -> String {
    let t = w.ticket(&w.owner, None).await.id;
    if status != S::Open {
        staff_set(w, &t, status).await.unwrap();
    }
    t
}

#[tokio::test]
async fn customer_messages_keep_open_and_otherwise_await_support() {
    let w = World::new("lc_cust_msg").await;
    w.grant(Duration::from_secs(3600)).await;
    let t = ticket_in(&w, S::Open).await;
    assert_eq!(customer_says(&w, &t).await.unwrap().status, S::Open as i32);
    for from in [S::AwaitingCustomer, S::AwaitingSupport, S::Resolved] {
        let t = ticket_in(&w, from).await;
        assert_eq!(
            customer_says(&w, &t).await.unwrap().status,
            S::AwaitingSupport as i32,
            "from {from:?}"
        );
    }
}

#[tokio::test]
async fn messages_on_a_closed_ticket_are_refused_until_reopened() {
    let w = World::new("lc_closed").await;
    w.grant(Duration::from_secs(3600)).await;
    let t = ticket_in(&w, S::Closed).await;
    assert_refused(
        customer_says(&w, &t).await,
        Code::FailedPrecondition,
        Reason::TicketClosed,
    );
    assert_refused(
        w.staff()
            .add_message(pb::SupportStaffServiceAddMessageRequest {
                ticket_id: t.clone(),
                body: "hi".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        Reason::TicketClosed,
    );
    // Internal notes are allowed on closed tickets.
    w.staff()
        .add_internal_note(pb::AddInternalNoteRequest {
            ticket_id: t.clone(),
            body: "closed by customer".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let reopened = w
        .customer(&w.owner)
        .reopen_ticket(pb::ReopenTicketRequest {
            ticket_id: t.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(reopened.status, S::Open as i32);
    customer_says(&w, &t).await.unwrap();
}

#[tokio::test]
async fn every_refused_status_transition_is_failed_precondition() {
    let w = World::new("lc_refused").await;
    w.grant(Duration::from_secs(3600)).await;
    let refused = [
        (S::Open, S::Open, false),
        (S::AwaitingCustomer, S::Open, true),
        (S::AwaitingSupport, S::Open, true),
        (S::Closed, S::AwaitingCustomer, true),
        (S::Closed, S::AwaitingSupport, true),
        (S::Closed, S::Resolved, true),
    ];
    for (from, to, is_refused) in refused {
        let t = ticket_in(&w, from).await;
        let result = staff_set(&w, &t, to).await;
        if is_refused {
            let status = result.unwrap_err();
            assert_eq!(status.code(), Code::FailedPrecondition, "{from:?}->{to:?}");
            assert_eq!(
                tenancy_testkit::refusal(&status),
                Reason::StatusTransitionInvalid
            );
        } else {
            assert_eq!(result.unwrap().status, to as i32, "no-op");
        }
    }
    // ReopenTicket refuses unfinished tickets.
    for from in [S::AwaitingCustomer, S::AwaitingSupport] {
        let t = ticket_in(&w, from).await;
        assert_refused(
            w.customer(&w.owner)
                .reopen_ticket(pb::ReopenTicketRequest { ticket_id: t })
                .await,
            Code::FailedPrecondition,
            Reason::StatusTransitionInvalid,
        );
    }
    // A staff reply may not name OPEN or CLOSED.
    let t = ticket_in(&w, S::Open).await;
    for bad in [S::Open, S::Closed] {
        let status = w
            .staff()
            .add_message(pb::SupportStaffServiceAddMessageRequest {
                ticket_id: t.clone(),
                body: "done".into(),
                status_after: Some(bad as i32),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn closing_twice_and_reopening_an_open_ticket_are_no_ops() {
    let w = World::new("lc_noop").await;
    let t = w.ticket(&w.owner, None).await.id;
    let mut c = w.customer(&w.owner);
    let reopened = c
        .reopen_ticket(pb::ReopenTicketRequest {
            ticket_id: t.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(reopened.status, S::Open as i32);
    for _ in 0..2 {
        let closed = c
            .close_ticket(pb::CloseTicketRequest {
                ticket_id: t.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .ticket
            .unwrap();
        assert_eq!(closed.status, S::Closed as i32);
    }
}

#[tokio::test]
async fn a_repeated_request_id_returns_the_first_result_and_other_content_is_refused() {
    let w = World::new("lc_retry").await;
    let mut c = w.customer(&w.owner);
    let mut req = create(None);
    req.request_id = id();
    let first = c.create_ticket(req.clone()).await.unwrap().into_inner();
    let again = c.create_ticket(req.clone()).await.unwrap().into_inner();
    assert_eq!(first.ticket.as_ref().unwrap().id, again.ticket.unwrap().id);
    req.body = "something else".into();
    assert_refused(
        c.create_ticket(req).await,
        Code::FailedPrecondition,
        Reason::RequestIdReused,
    );
    let t = first.ticket.unwrap().id;
    let msg = pb::AddMessageRequest {
        ticket_id: t.clone(),
        body: "ping".into(),
        request_id: id(),
    };
    let m1 = c.add_message(msg.clone()).await.unwrap().into_inner();
    let m2 = c.add_message(msg.clone()).await.unwrap().into_inner();
    assert_eq!(m1.message.unwrap().id, m2.message.unwrap().id);
    assert_eq!(m2.ticket.unwrap().message_count, 2);
}

#[tokio::test]
async fn lists_page_by_keyset_and_refuse_tokens_of_other_filters() {
    let w = World::new("lc_pages").await;
    for _ in 0..5 {
        w.ticket(&w.owner, None).await;
        w.clock.advance(Duration::from_millis(5));
    }
    let mut c = w.customer(&w.owner);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_tickets(pb::ListTicketsRequest {
                page_size: 2,
                page_token: token.clone(),
                order_by: pb::TicketOrder::CreateTimeAsc as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.tickets.into_iter().map(|t| {
            t.create_time.unwrap().nanos as i64 + t.create_time.unwrap().seconds * 1_000_000_000
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|p| p[0] < p[1]));
    let first = c
        .list_tickets(pb::ListTicketsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_refused(
        c.list_tickets(pb::ListTicketsRequest {
            page_size: 2,
            page_token: first.next_page_token,
            statuses: vec![S::Closed as i32],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        Reason::PageTokenInvalid,
    );
    assert_refused(
        c.list_tickets(pb::ListTicketsRequest {
            page_token: "garbage!".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        Reason::PageTokenInvalid,
    );
}

#[tokio::test]
async fn cc_users_must_be_members_who_may_see_the_ticket() {
    let w = World::new("lc_cc").await;
    let t = w.ticket(&w.owner, Some(&w.s1)).await.id;
    let mut c = w.customer(&w.owner);
    let after = c
        .update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t.clone(),
            add_user_ids: vec![w.selected.clone(), w.all.clone()],
            remove_user_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(after.cc_user_ids.len(), 2);
    for user in [&w.none, &w.outsider] {
        assert_refused(
            c.update_ticket_cc(pb::UpdateTicketCcRequest {
                ticket_id: t.clone(),
                add_user_ids: vec![user.clone()],
                remove_user_ids: vec![],
            })
            .await,
            Code::InvalidArgument,
            Reason::CcUserNotEligible,
        );
    }
    let removed = c
        .update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t.clone(),
            add_user_ids: vec![],
            remove_user_ids: vec![w.all.clone(), w.none.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(removed.cc_user_ids, vec![w.selected.clone()]);
}

#[tokio::test]
async fn long_lists_are_refused_before_any_lookup_and_repeats_collapse() {
    use std::sync::atomic::Ordering::SeqCst;
    let w = World::new("lc_cc_amp").await;
    let t = w.ticket(&w.owner, Some(&w.s1)).await.id;
    let mut c = w.customer(&w.owner);
    let refused = |status: tonic::Status, field: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(tenancy_testkit::refusal(&status), Reason::ListTooLong);
        assert_eq!(violated_fields(&status), [field]);
    };
    let checks = w.batch_checks.load(SeqCst);
    // 20,000 copies of one id: refused at the edge, no access check made.
    let status = c
        .update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t.clone(),
            add_user_ids: vec![w.selected.clone(); 20_000],
            remove_user_ids: vec![],
        })
        .await
        .unwrap_err();
    refused(status, "add_user_ids");
    let status = c
        .update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t.clone(),
            add_user_ids: vec![],
            remove_user_ids: vec![w.selected.clone(); 21],
        })
        .await
        .unwrap_err();
    refused(status, "remove_user_ids");
    let mut create_many = create(Some(&w.s1));
    create_many.cc_user_ids = vec![w.selected.clone(); 21];
    refused(
        c.create_ticket(create_many).await.unwrap_err(),
        "cc_user_ids",
    );
    refused(
        c.list_tickets(pb::ListTicketsRequest {
            statuses: vec![pb::TicketStatus::Open as i32; 40_000],
            ..Default::default()
        })
        .await
        .unwrap_err(),
        "statuses",
    );
    refused(
        w.staff()
            .list_queue(pb::ListQueueRequest {
                priorities: vec![pb::TicketPriority::High as i32; 11],
                ..Default::default()
            })
            .await
            .unwrap_err(),
        "priorities",
    );
    assert_eq!(w.batch_checks.load(SeqCst), checks);
    // Within the limit, 20 copies of one id are one user: one check for
    // them (and one for the caller's access to the ticket).
    let after = c
        .update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t.clone(),
            add_user_ids: vec![w.selected.clone(); 20],
            remove_user_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(after.cc_user_ids, std::slice::from_ref(&w.selected));
    assert_eq!(w.batch_checks.load(SeqCst), checks + 2);
    // A change that would pass 20 CC users is refused before any user is
    // checked (only the caller's access is).
    let strangers: Vec<String> = (0..20).map(|_| id()).collect();
    assert_refused(
        c.update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t,
            add_user_ids: strangers,
            remove_user_ids: vec![],
        })
        .await,
        Code::InvalidArgument,
        Reason::CcLimitExceeded,
    );
    assert_eq!(w.batch_checks.load(SeqCst), checks + 3);
}

#[tokio::test]
async fn concurrent_messages_get_distinct_consecutive_sequences() {
    let w = World::new("lc_concurrent").await;
    let t = w.ticket(&w.owner, None).await.id;
    let calls = (0..8).map(|i| {
        let mut c = w.customer(&w.owner);
        let t = t.clone();
        async move {
            c.add_message(pb::AddMessageRequest {
                ticket_id: t,
                body: format!("message {i}"),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
            .sequence
        }
    });
    let mut sequences = futures::future::join_all(calls).await;
    sequences.sort();
    assert_eq!(sequences, (2..=9).collect::<Vec<i64>>());
    let after = w
        .customer(&w.owner)
        .get_ticket(pb::GetTicketRequest { ticket_id: t })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(after.message_count, 9);
    assert_eq!(after.last_message_sequence, 9);
}
