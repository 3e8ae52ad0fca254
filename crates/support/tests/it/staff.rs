//! The support team: access only under an active grant, every call
//! audited, internal notes, assignment, the queue, caller verification.

use std::time::Duration;

use tenancy_proto::support as pb;
use tenancy_runtime::Reason;
use tonic::Code;

use crate::harness::{World, assert_refused};

async fn get(w: &World, t: &str) -> Result<pb::Ticket, tonic::Status> {
    w.staff()
        .get_ticket(pb::SupportStaffServiceGetTicketRequest {
            ticket_id: t.to_owned(),
        })
        .await
        .map(|r| r.into_inner().ticket.unwrap())
}

#[tokio::test]
async fn staff_without_a_grant_are_refused_everywhere() {
    let w = World::new("st_nogrant").await;
    let t = w.ticket(&w.owner, None).await.id;
    let mut s = w.staff();
    assert_refused(
        get(&w, &t).await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
    assert_refused(
        s.list_messages(pb::SupportStaffServiceListMessagesRequest {
            ticket_id: t.clone(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
    assert_refused(
        s.add_message(pb::SupportStaffServiceAddMessageRequest {
            ticket_id: t.clone(),
            body: "hi".into(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
    assert_refused(
        s.set_ticket_status(pb::SetTicketStatusRequest {
            ticket_id: t.clone(),
            status: pb::TicketStatus::Resolved as i32,
        })
        .await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
    assert_refused(
        w.staff_as_customer_api()
            .list_messages(pb::ListMessagesRequest {
                ticket_id: t.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
    assert!(
        s.list_queue(pb::ListQueueRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tickets
            .is_empty()
    );
    assert!(w.staff_audit().await.is_empty());
}

#[tokio::test]
async fn access_ends_at_once_when_the_grant_expires() {
    let w = World::new("st_expiry").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(60)).await;
    get(&w, &t).await.unwrap();
    w.clock.advance(Duration::from_secs(61));
    assert_refused(
        get(&w, &t).await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
}

#[tokio::test]
async fn access_ends_at_once_when_the_owner_revokes_the_grant() {
    let w = World::new("st_revoke").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(3600)).await;
    get(&w, &t).await.unwrap();
    w.revoke_grant().await;
    assert_refused(
        get(&w, &t).await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
}

#[tokio::test]
async fn every_staff_read_and_write_is_audited_in_the_account() {
    let w = World::new("st_audit").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(3600)).await;
    let mut s = w.staff();
    get(&w, &t).await.unwrap();
    s.list_messages(pb::SupportStaffServiceListMessagesRequest {
        ticket_id: t.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    s.add_message(pb::SupportStaffServiceAddMessageRequest {
        ticket_id: t.clone(),
        body: "We are on it".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    s.add_internal_note(pb::AddInternalNoteRequest {
        ticket_id: t.clone(),
        body: "disk 3 failing".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    s.assign_ticket(pb::AssignTicketRequest {
        ticket_id: t.clone(),
        assignee: Some(pb::assign_ticket_request::Assignee::AssignToSelf(true)),
        only_if_unassigned: false,
    })
    .await
    .unwrap();
    s.set_ticket_status(pb::SetTicketStatusRequest {
        ticket_id: t.clone(),
        status: pb::TicketStatus::Resolved as i32,
    })
    .await
    .unwrap();
    w.staff_as_customer_api()
        .list_messages(pb::ListMessagesRequest {
            ticket_id: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let audit = w.staff_audit().await;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "ticket.read",
            "ticket.messages_read",
            "ticket.message_add",
            "ticket.note_add",
            "ticket.assign",
            "ticket.set_status",
            "ticket.messages_read"
        ]
    );
    for e in &audit {
        assert_eq!(e.account_id, w.account_id);
        assert_eq!(e.actor_id, w.staff_user);
        assert_eq!(
            e.actor_kind,
            tenancy_proto::account::ActorKind::Staff as i32
        );
        assert_eq!(e.target_id, t);
    }
}

#[tokio::test]
async fn internal_notes_are_never_shown_to_customers() {
    let w = World::new("st_notes").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(3600)).await;
    let note = w
        .staff()
        .add_internal_note(pb::AddInternalNoteRequest {
            ticket_id: t.clone(),
            body: "customer is grumpy".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.note.unwrap().sequence, 2);
    assert_eq!(note.ticket.as_ref().unwrap().internal_note_count, 1);
    assert_eq!(note.ticket.unwrap().status, pb::TicketStatus::Open as i32);
    let customer_view = w
        .customer(&w.owner)
        .get_ticket(pb::GetTicketRequest {
            ticket_id: t.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(customer_view.internal_note_count, 0);
    assert_eq!(customer_view.last_message_sequence, 1);
    let messages = w
        .customer(&w.owner)
        .list_messages(pb::ListMessagesRequest {
            ticket_id: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 1);
    let staff_messages = w
        .staff()
        .list_messages(pb::SupportStaffServiceListMessagesRequest {
            ticket_id: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(staff_messages.len(), 2);
    assert!(staff_messages[1].internal);
}

#[tokio::test]
async fn a_staff_reply_awaits_the_customer_and_hides_the_staff_id_from_customers() {
    let w = World::new("st_reply").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(3600)).await;
    let reply = w
        .staff()
        .add_message(pb::SupportStaffServiceAddMessageRequest {
            ticket_id: t.clone(),
            body: "Please reboot".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.ticket.unwrap().status,
        pb::TicketStatus::AwaitingCustomer as i32
    );
    assert_eq!(reply.message.unwrap().author_user_id, w.staff_user);
    let seen = w
        .customer(&w.owner)
        .list_messages(pb::ListMessagesRequest {
            ticket_id: t,
            after_message_sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].author_kind, pb::ActorKind::Staff as i32);
    assert_eq!(seen[0].author_user_id, "");
}

#[tokio::test]
async fn the_queue_holds_only_accounts_with_an_active_grant() {
    let w = World::new("st_queue").await;
    let t = w.ticket(&w.owner, None).await.id;
    let mut s = w.staff();
    assert!(
        s.list_queue(pb::ListQueueRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tickets
            .is_empty()
    );
    w.grant(Duration::from_secs(3600)).await;
    let queue = s
        .list_queue(pb::ListQueueRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].id, t);
    assert_refused(
        s.list_queue(pb::ListQueueRequest {
            account_id: crate::harness::id(),
            ..Default::default()
        })
        .await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
}

#[tokio::test]
async fn a_claim_does_not_override_another_assignee_and_assignees_must_be_staff() {
    let mut w = World::new("st_assign").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(3600)).await;
    let other_staff = w.staff_member("other-staff").await;
    let mut s = w.staff();
    s.assign_ticket(pb::AssignTicketRequest {
        ticket_id: t.clone(),
        assignee: Some(pb::assign_ticket_request::Assignee::AssigneeUserId(
            other_staff.clone(),
        )),
        only_if_unassigned: true,
    })
    .await
    .unwrap();
    assert_refused(
        s.assign_ticket(pb::AssignTicketRequest {
            ticket_id: t.clone(),
            assignee: Some(pb::assign_ticket_request::Assignee::AssignToSelf(true)),
            only_if_unassigned: true,
        })
        .await,
        Code::FailedPrecondition,
        Reason::TicketAlreadyAssigned,
    );
    assert_refused(
        s.assign_ticket(pb::AssignTicketRequest {
            ticket_id: t.clone(),
            assignee: Some(pb::assign_ticket_request::Assignee::AssigneeUserId(
                w.owner.clone(),
            )),
            only_if_unassigned: false,
        })
        .await,
        Code::InvalidArgument,
        Reason::AssigneeNotStaff,
    );
    let customer_view = w
        .customer(&w.owner)
        .get_ticket(pb::GetTicketRequest { ticket_id: t })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(customer_view.assignee_user_id, "");
}

#[tokio::test]
async fn customers_cannot_use_the_staff_service() {
    let w = World::new("st_cust").await;
    let principal = tenancy_testkit::member(&w.owner, &w.account_id, tenancy_testkit::Role::Owner);
    let mut c = pb::support_staff_service_client::SupportStaffServiceClient::with_interceptor(
        w.channel.clone(),
        tenancy_testkit::Caller::new(principal, std::sync::Arc::new(w.clock.clone())),
    );
    assert_refused(
        c.list_queue(pb::ListQueueRequest::default()).await,
        Code::PermissionDenied,
        Reason::StaffRequired,
    );
}

fn verify(w: &World, user: &str, word: &str) -> pb::VerifyCallerRequest {
    pb::VerifyCallerRequest {
        account_id: w.account_id.clone(),
        user_id: user.to_owned(),
        code_word: word.to_owned(),
        ticket_id: String::new(),
    }
}

#[tokio::test]
async fn callers_are_verified_by_code_word_attempt_limited_and_audited() {
    let w = World::new("st_verify").await;
    w.set_code_word(&w.owner, "Blue Falcon").await;
    w.grant(Duration::from_secs(3600)).await;
    let mut s = w.staff();
    let ok = s
        .verify_caller(verify(&w, &w.owner, "blue falcon"))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.verified);
    assert_eq!(ok.outcome, pb::VerifyCallerOutcome::Verified as i32);
    let no = s
        .verify_caller(verify(&w, &w.all, "anything"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(no.outcome, pb::VerifyCallerOutcome::NoCodeWord as i32);
    for _ in 0..5 {
        let bad = s
            .verify_caller(verify(&w, &w.owner, "red"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(bad.outcome, pb::VerifyCallerOutcome::Mismatch as i32);
        assert!(!bad.verified);
    }
    assert_refused(
        s.verify_caller(verify(&w, &w.owner, "blue falcon")).await,
        Code::ResourceExhausted,
        Reason::CodeWordAttemptsExceeded,
    );
    assert_refused(
        s.verify_caller(verify(&w, &w.outsider, "x")).await,
        Code::NotFound,
        Reason::MemberNotFound,
    );
    let audit = w.staff_audit().await;
    assert_eq!(audit.len(), 7);
    for e in &audit {
        assert_eq!(e.action, "member.verify_caller");
        let text = format!("{e:?}").to_lowercase();
        assert!(
            !text.contains("falcon") && !text.contains("\"red\""),
            "{text}"
        );
    }
}

#[tokio::test]
async fn verification_on_a_ticket_needs_the_grant_and_leaves_a_system_note() {
    let w = World::new("st_verify_t").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.set_code_word(&w.owner, "kiwi").await;
    let mut s = w.staff();
    let mut req = verify(&w, &w.owner, "kiwi");
    req.ticket_id = t.clone();
    // Five wrong words without a grant: were any of them checked, identity
    // would lock the code word (5 failures an hour) and the right word
    // below would be refused.
    for _ in 0..5 {
        let mut wrong = req.clone();
        wrong.code_word = "wrong word".into();
        assert_refused(
            s.verify_caller(wrong).await,
            Code::PermissionDenied,
            Reason::SupportAccessNotGranted,
        );
    }
    w.grant(Duration::from_secs(3600)).await;
    assert!(s.verify_caller(req).await.unwrap().into_inner().verified);
    let notes = s
        .list_messages(pb::SupportStaffServiceListMessagesRequest {
            ticket_id: t,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let note = notes.last().unwrap();
    assert!(note.internal);
    assert_eq!(note.author_kind, pb::ActorKind::System as i32);
    assert!(note.body.contains("VERIFIED") && !note.body.contains("kiwi"));
}

#[tokio::test]
async fn verification_needs_the_grant_even_without_a_ticket() {
    let w = World::new("st_verify_ng").await;
    w.set_code_word(&w.owner, "kiwi").await;
    let mut s = w.staff();
    // Were any of these checked, identity would lock the code word (5
    // failures an hour) and the right word below would be refused.
    for _ in 0..5 {
        assert_refused(
            s.verify_caller(verify(&w, &w.owner, "wrong word")).await,
            Code::PermissionDenied,
            Reason::SupportAccessNotGranted,
        );
    }
    // Nor does it tell a stranger's id from a member's.
    assert_refused(
        s.verify_caller(verify(&w, &w.outsider, "x")).await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
    assert!(w.staff_audit().await.is_empty());
    w.grant(Duration::from_secs(3600)).await;
    assert!(
        s.verify_caller(verify(&w, &w.owner, "kiwi"))
            .await
            .unwrap()
            .into_inner()
            .verified
    );
    w.revoke_grant().await;
    assert_refused(
        s.verify_caller(verify(&w, &w.owner, "kiwi")).await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
}

#[tokio::test]
async fn concurrent_guesses_are_checked_at_most_up_to_the_limit() {
    let w = World::new("st_verify_race").await;
    w.set_code_word(&w.owner, "kiwi").await;
    w.grant(Duration::from_secs(3600)).await;
    let guesses = (0..10).map(|i| {
        let mut s = w.staff();
        let guess = verify(&w, &w.owner, &format!("guess number {i}"));
        async move { s.verify_caller(guess).await }
    });
    let results = futures::future::join_all(guesses).await;
    let mut checked = 0;
    for r in results {
        match r {
            Ok(reply) => {
                assert_eq!(
                    reply.into_inner().outcome,
                    pb::VerifyCallerOutcome::Mismatch as i32
                );
                checked += 1;
            }
            Err(status) => assert_refused::<()>(
                Err(status),
                Code::ResourceExhausted,
                Reason::CodeWordAttemptsExceeded,
            ),
        }
    }
    assert!(
        (1..=5).contains(&checked),
        "{checked} of 10 concurrent guesses were checked; the limit is 5"
    );
    // The allowance is used up: even the right word is not checked now.
    assert_refused(
        w.staff().verify_caller(verify(&w, &w.owner, "kiwi")).await,
        Code::ResourceExhausted,
        Reason::CodeWordAttemptsExceeded,
    );
    assert_eq!(w.staff_audit().await.len(), checked);
}
