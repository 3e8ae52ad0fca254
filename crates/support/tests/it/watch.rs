//! WatchTicket: snapshot, replay, live events, and the end of the stream
//! when access is withdrawn.

use std::time::Duration;

use tenancy_proto::support as pb;
use tenancy_runtime::Reason;
use tokio_stream::StreamExt;
use tonic::Code;

use tenancy_proto::account::ServiceAccess;

use crate::harness::{Customer, World, assert_refused};

use pb::watch_ticket_response::Event as E;

async fn next(stream: &mut tonic::Streaming<pb::WatchTicketResponse>) -> Result<E, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(r))) => Ok(r.event.unwrap()),
        Ok(Some(Err(status))) => Err(status),
        Ok(None) => panic!("stream ended without status"),
        Err(_) => panic!("no event within 5 s"),
    }
}

/// A watch of `ticket` by `client` from the start, past its snapshot.
async fn watching(mut client: Customer, ticket: &str) -> tonic::Streaming<pb::WatchTicketResponse> {
    let mut stream = client
        .watch_ticket(pb::WatchTicketRequest {
            ticket_id: ticket.to_owned(),
            after_message_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(next(&mut stream).await.unwrap(), E::Snapshot(_)));
    stream
}

#[tokio::test]
async fn a_watcher_gets_the_snapshot_replay_and_live_messages_and_status_changes() {
    let w = World::new("wt_live").await;
    let t = w.ticket(&w.owner, None).await.id;
    let mut c = w.customer(&w.owner);
    c.add_message(pb::AddMessageRequest {
        ticket_id: t.clone(),
        body: "second".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let mut stream = c
        .watch_ticket(pb::WatchTicketRequest {
            ticket_id: t.clone(),
            after_message_sequence: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(next(&mut stream).await.unwrap(), E::Snapshot(s) if s.id == t));
    assert!(matches!(next(&mut stream).await.unwrap(), E::MessageAdded(m) if m.sequence == 2));
    w.grant(Duration::from_secs(3600)).await;
    w.staff()
        .add_message(pb::SupportStaffServiceAddMessageRequest {
            ticket_id: t.clone(),
            body: "live".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        matches!(next(&mut stream).await.unwrap(), E::MessageAdded(m) if m.body == "live" && m.author_user_id.is_empty())
    );
    match next(&mut stream).await.unwrap() {
        E::StatusChanged(c) => {
            let change = c.change.unwrap();
            assert_eq!(change.status, pb::TicketStatus::AwaitingCustomer as i32);
            assert_eq!(change.changed_by_kind, pb::ActorKind::Staff as i32);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_watch_ends_with_not_found_when_service_access_is_withdrawn() {
    let w = World::new("wt_scope").await;
    let t = w.ticket(&w.owner, Some(&w.s1)).await.id;
    let mut stream = watching(w.customer(&w.selected), &t).await;
    w.set_scope(&w.selected, ServiceAccess::None, &[]).await;
    assert_refused(
        next(&mut stream).await,
        Code::NotFound,
        Reason::TicketNotFound,
    );
}

#[tokio::test]
async fn a_watch_cannot_start_on_an_invisible_ticket() {
    let w = World::new("wt_start").await;
    let t = w.ticket(&w.owner, Some(&w.s2)).await.id;
    let status = w
        .customer(&w.none)
        .watch_ticket(pb::WatchTicketRequest {
            ticket_id: t,
            after_message_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn a_staff_watch_ends_when_the_grant_expires_during_the_stream() {
    let w = World::new("wt_grant").await;
    let t = w.ticket(&w.owner, None).await.id;
    w.grant(Duration::from_secs(600)).await;
    let mut stream = watching(w.staff_as_customer_api(), &t).await;
    w.clock.advance(Duration::from_secs(601));
    assert_refused(
        next(&mut stream).await,
        Code::PermissionDenied,
        Reason::SupportAccessNotGranted,
    );
}

/// Suspending or revoking the member ends their watch within about a
/// second, with NOT_FOUND, even when nothing happens on the ticket.
#[tokio::test]
async fn a_watch_ends_within_a_second_when_the_member_is_suspended_or_revoked() {
    let w = World::new("wt_member").await;
    let t = w.ticket(&w.owner, None).await.id;
    for (user, end) in [(&w.all, "suspend"), (&w.none, "revoke")] {
        let mut stream = watching(w.customer(user), &t).await;
        let started = std::time::Instant::now();
        if end == "suspend" {
            w.suspend(user).await;
        } else {
            w.revoke(user).await;
        }
        let ended = next(&mut stream).await;
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{end}: ended after {:?}",
            started.elapsed()
        );
        assert_refused(ended, Code::NotFound, Reason::TicketNotFound);
    }
}
