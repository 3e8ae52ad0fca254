//! Replies notify the creator and CC users through contacts' Notify
//! (SUPPORT_REPLIES, preferences applied there), staff replies on technical
//! tickets also the TECHNICAL contacts; internal notes notify nobody. Read
//! from the real contacts outbox.

use std::time::Duration;

use tenancy_proto::contacts as cpb;
use tenancy_proto::support as pb;

use crate::harness::{World, create};

async fn ticket_with_cc(w: &World, category: pb::TicketCategory) -> pb::Ticket {
    let mut req = create(None);
    req.category = category as i32;
    req.cc_user_ids = vec![w.all.clone()];
    w.customer(&w.owner)
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
}

fn sorted(mut users: Vec<String>) -> Vec<String> {
    users.sort();
    users
}

/// A verified contact of the account with `roles`; returns its email.
async fn verified_contact(w: &World, name: &str, roles: &[cpb::ContactRole]) -> String {
    let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
    w.owner_contacts()
        .create_contact(cpb::CreateContactRequest {
            contact: Some(cpb::Contact {
                name: name.into(),
                email: email.clone(),
                roles: roles.iter().map(|r| *r as i32).collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let link = w
        .contacts_internal()
        .list_outbox_messages(cpb::ListOutboxMessagesRequest {
            to_email: email.clone(),
            template: cpb::MessageTemplate::ContactVerification as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages
        .remove(0)
        .template_data["verify_url"]
        .clone();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    w.public_contacts()
        .verify_contact_email(cpb::VerifyContactEmailRequest { token })
        .await
        .unwrap();
    email
}

#[tokio::test]
async fn a_new_ticket_notifies_its_creator_and_cc_users() {
    let w = World::new("nt_create").await;
    let t = ticket_with_cc(&w, pb::TicketCategory::Technical).await;
    let sent = w.outbox_at_least("support:", 2).await;
    assert!(sent.iter().all(
        |m| m.request_id == format!("support:ticket-created:{}", t.id)
            && m.template == cpb::MessageTemplate::TicketReply as i32
    ));
    assert_eq!(
        w.recipients(&sent),
        sorted(vec![w.owner.clone(), w.all.clone()])
    );
}

#[tokio::test]
async fn a_staff_reply_notifies_creator_cc_and_technical_contacts_once_per_message() {
    let w = World::new("nt_staff").await;
    // The first contact becomes PRIMARY: a contact without TECHNICAL.
    let billing = verified_contact(&w, "billing", &[cpb::ContactRole::Billing]).await;
    let technical = verified_contact(&w, "tech", &[cpb::ContactRole::Technical]).await;
    let t = ticket_with_cc(&w, pb::TicketCategory::Technical).await;
    w.grant(Duration::from_secs(3600)).await;
    let reply = pb::SupportStaffServiceAddMessageRequest {
        ticket_id: t.id.clone(),
        body: "Fixed".into(),
        request_id: crate::harness::id(),
        ..Default::default()
    };
    let m = w
        .staff()
        .add_message(reply.clone())
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    let key = format!("support:ticket-reply:{}", m.id);
    let replies = w.outbox_at_least(&key, 3).await;
    assert_eq!(
        w.recipients(&replies),
        sorted(vec![w.owner.clone(), w.all.clone(), technical.clone()])
    );
    assert!(!w.recipients(&replies).contains(&billing));
    assert!(replies.iter().all(|r| {
        r.template == cpb::MessageTemplate::TicketReply as i32
            && r.category == cpb::NotificationCategory::SupportReplies as i32
            && r.template_data["message_excerpt"] == "Fixed"
            && r.template_data["author_name"] == "Support"
    }));
    // A retried reply is the same message: nobody is notified twice.
    w.staff().add_message(reply).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.outbox(&key).await.len(), 3);
}

#[tokio::test]
async fn a_customer_reply_notifies_the_others_but_not_the_author_and_notes_notify_nobody() {
    let w = World::new("nt_cust").await;
    let t = ticket_with_cc(&w, pb::TicketCategory::General).await;
    w.grant(Duration::from_secs(3600)).await;
    w.staff()
        .add_internal_note(pb::AddInternalNoteRequest {
            ticket_id: t.id.clone(),
            body: "note".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    w.customer(&w.all)
        .add_message(pb::AddMessageRequest {
            ticket_id: t.id.clone(),
            body: "me too".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let sent = w.outbox_at_least("support:ticket-reply", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        w.outbox("support:ticket-reply").await.len(),
        1,
        "the note notified nobody"
    );
    assert_eq!(w.recipients(&sent), std::slice::from_ref(&w.owner));
}
