//! Seed 002: SELECTED members see account-general tickets and tickets of
//! their services; NONE only account-general ones; ALL and owners
//! everything. Invisible tickets are NOT_FOUND, never PERMISSION_DENIED.

use std::collections::HashSet;

use tenancy_proto::support as pb;
use tenancy_runtime::Reason;
use tonic::Code;

use tenancy_proto::account::ServiceAccess;

use crate::harness::{World, assert_refused, create};

/// Tickets on s1, s2 and account-general, created by the owner.
async fn three_tickets(w: &World) -> (pb::Ticket, pb::Ticket, pb::Ticket) {
    (
        w.ticket(&w.owner, Some(&w.s1)).await,
        w.ticket(&w.owner, Some(&w.s2)).await,
        w.ticket(&w.owner, None).await,
    )
}

async fn listed(w: &World, user: &str) -> HashSet<String> {
    w.customer(user)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets
        .into_iter()
        .map(|t| t.id)
        .collect()
}

async fn gets(w: &World, user: &str, ticket: &pb::Ticket) -> Result<(), tonic::Status> {
    w.customer(user)
        .get_ticket(pb::GetTicketRequest {
            ticket_id: ticket.id.clone(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn owners_and_members_with_all_see_every_ticket() {
    let w = World::new("vis_all").await;
    let (a, b, c) = three_tickets(&w).await;
    for user in [&w.owner, &w.all] {
        assert_eq!(
            listed(&w, user).await,
            HashSet::from([a.id.clone(), b.id.clone(), c.id.clone()])
        );
        for t in [&a, &b, &c] {
            gets(&w, user, t).await.unwrap();
        }
    }
}

#[tokio::test]
async fn selected_members_see_general_tickets_and_their_services_only() {
    let w = World::new("vis_sel").await;
    let (a, b, c) = three_tickets(&w).await;
    assert_eq!(
        listed(&w, &w.selected).await,
        HashSet::from([a.id.clone(), c.id.clone()])
    );
    gets(&w, &w.selected, &a).await.unwrap();
    gets(&w, &w.selected, &c).await.unwrap();
    assert_refused(
        gets(&w, &w.selected, &b).await,
        Code::NotFound,
        Reason::TicketNotFound,
    );
}

#[tokio::test]
async fn none_members_see_only_account_general_tickets() {
    let w = World::new("vis_none").await;
    let (a, b, c) = three_tickets(&w).await;
    assert_eq!(listed(&w, &w.none).await, HashSet::from([c.id.clone()]));
    for hidden in [&a, &b] {
        assert_refused(
            gets(&w, &w.none, hidden).await,
            Code::NotFound,
            Reason::TicketNotFound,
        );
    }
}

#[tokio::test]
async fn invisible_tickets_are_not_found_in_add_message_close_and_reopen() {
    let w = World::new("vis_writes").await;
    let hidden = w.ticket(&w.owner, Some(&w.s2)).await;
    for user in [&w.selected, &w.none, &w.outsider] {
        let mut c = w.customer(user);
        assert_refused(
            c.add_message(pb::AddMessageRequest {
                ticket_id: hidden.id.clone(),
                body: "hello".into(),
                request_id: String::new(),
            })
            .await,
            Code::NotFound,
            Reason::TicketNotFound,
        );
        assert_refused(
            c.close_ticket(pb::CloseTicketRequest {
                ticket_id: hidden.id.clone(),
            })
            .await,
            Code::NotFound,
            Reason::TicketNotFound,
        );
        assert_refused(
            c.reopen_ticket(pb::ReopenTicketRequest {
                ticket_id: hidden.id.clone(),
            })
            .await,
            Code::NotFound,
            Reason::TicketNotFound,
        );
        assert_refused(
            c.list_messages(pb::ListMessagesRequest {
                ticket_id: hidden.id.clone(),
                ..Default::default()
            })
            .await,
            Code::NotFound,
            Reason::TicketNotFound,
        );
    }
}

#[tokio::test]
async fn members_create_tickets_only_for_services_they_reach() {
    let w = World::new("vis_create").await;
    w.ticket(&w.selected, Some(&w.s1)).await;
    w.ticket(&w.selected, None).await;
    w.ticket(&w.none, None).await;
    for (user, service) in [(&w.selected, &w.s2), (&w.none, &w.s1)] {
        assert_refused(
            w.customer(user).create_ticket(create(Some(service))).await,
            Code::NotFound,
            Reason::ServiceNotFound,
        );
    }
}

#[tokio::test]
async fn a_change_of_scope_applies_at_once() {
    let w = World::new("vis_scope").await;
    let t = w.ticket(&w.owner, Some(&w.s1)).await;
    gets(&w, &w.selected, &t).await.unwrap();
    w.set_scope(
        &w.selected,
        ServiceAccess::Selected,
        std::slice::from_ref(&w.s2),
    )
    .await;
    assert_refused(
        gets(&w, &w.selected, &t).await,
        Code::NotFound,
        Reason::TicketNotFound,
    );
    assert!(listed(&w, &w.selected).await.is_empty());
}

#[tokio::test]
async fn suspended_members_and_outsiders_see_nothing() {
    let w = World::new("vis_susp").await;
    let general = w.ticket(&w.owner, None).await;
    w.suspend(&w.all).await;
    for user in [&w.all, &w.outsider] {
        assert_refused(
            gets(&w, user, &general).await,
            Code::NotFound,
            Reason::TicketNotFound,
        );
        assert!(listed(&w, user).await.is_empty());
    }
}

#[tokio::test]
async fn a_list_makes_one_access_check_whatever_its_size() {
    let w = World::new("vis_batch").await;
    for _ in 0..5 {
        w.ticket(&w.owner, Some(&w.s1)).await;
        w.ticket(&w.owner, Some(&w.s2)).await;
    }
    let before = w.batch_checks.load(std::sync::atomic::Ordering::SeqCst);
    let tickets = w
        .customer(&w.selected)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(tickets.len(), 5);
    assert_eq!(
        w.batch_checks.load(std::sync::atomic::Ordering::SeqCst) - before,
        1
    );
}

#[tokio::test]
async fn a_ticket_of_another_account_is_not_found() {
    let w = World::new("vis_other").await;
    let t = w.ticket(&w.owner, None).await;
    let other = w.create_account(&w.owner).await;
    let mut c = w.customer_of(&w.owner, &other);
    assert_refused(
        c.get_ticket(pb::GetTicketRequest { ticket_id: t.id }).await,
        Code::NotFound,
        Reason::TicketNotFound,
    );
}
