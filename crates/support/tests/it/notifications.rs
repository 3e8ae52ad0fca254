//! Replies notify the creator and CC users through contacts' Notify
//! (SUPPORT_REPLIES, preferences applied there), staff replies on technical
//! tickets also the TECHNICAL contacts; internal notes notify nobody.

use std::time::Duration;

use tenancy_proto::contacts as cpb;
use tenancy_proto::support as pb;

use crate::harness::{World, create};

async fn until_notified(w: &World, n: usize) -> Vec<cpb::NotifyRequest> {
    for _ in 0..100 {
        let seen = replies(w);
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replies(w)
}

/// Notifications of replies (not of ticket creation).
fn replies(w: &World) -> Vec<cpb::NotifyRequest> {
    w.contacts
        .notified
        .lock()
        .iter()
        .filter(|n| n.idempotency_key.starts_with("support:ticket-reply"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_new_ticket_notifies_its_creator_and_cc_users() {
    let w = World::new("nt_create").await;
    let mut req = create(None);
    req.cc_user_ids = vec![w.all.clone()];
    let t = w
        .customer(&w.owner)
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let key = format!("support:ticket-created:{}", t.id);
    for _ in 0..100 {
        if !w.contacts.notified.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = w.contacts.notified.lock().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].idempotency_key, key);
    let mut to: Vec<&str> = sent[0]
        .extra_recipients
        .iter()
        .map(|r| r.user_id.as_str())
        .collect();
    to.sort();
    let mut expected = vec![w.owner.as_str(), w.all.as_str()];
    expected.sort();
    assert_eq!(to, expected);
}

#[tokio::test]
async fn a_staff_reply_notifies_creator_cc_and_technical_contacts_once_per_message() {
    let w = World::new("nt_staff").await;
    let mut req = create(None);
    req.cc_user_ids = vec![w.all.clone()];
    let t = w
        .customer(&w.owner)
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    w.grant(Duration::from_secs(3600));
    let m = w
        .staff()
        .add_message(pb::SupportStaffServiceAddMessageRequest {
            ticket_id: t.id.clone(),
            body: "Fixed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    let sent = until_notified(&w, 2).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let replies = sent
        .iter()
        .find(|n| n.category == cpb::NotificationCategory::SupportReplies as i32)
        .unwrap();
    assert_eq!(
        replies.idempotency_key,
        format!("support:ticket-reply:{}", m.id)
    );
    let mut to: Vec<&str> = replies
        .extra_recipients
        .iter()
        .map(|r| r.user_id.as_str())
        .collect();
    to.sort();
    let mut expected = vec![w.owner.as_str(), w.all.as_str()];
    expected.sort();
    assert_eq!(to, expected);
    assert_eq!(replies.template, cpb::MessageTemplate::TicketReply as i32);
    assert!(
        sent.iter()
            .any(|n| n.category == cpb::NotificationCategory::TechnicalIncidents as i32)
    );
}

#[tokio::test]
async fn a_customer_reply_notifies_the_others_but_not_the_author_and_notes_notify_nobody() {
    let w = World::new("nt_cust").await;
    let mut req = create(None);
    req.category = pb::TicketCategory::General as i32;
    req.cc_user_ids = vec![w.all.clone()];
    let t = w
        .customer(&w.owner)
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    w.grant(Duration::from_secs(3600));
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
    let sent = until_notified(&w, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent_after = replies(&w);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent_after.len(), 1, "the note notified nobody");
    let to: Vec<&str> = sent[0]
        .extra_recipients
        .iter()
        .map(|r| r.user_id.as_str())
        .collect();
    assert_eq!(to, [w.owner.as_str()]);
}
