//! SendEmail, GetOutboxMessage and ListOutboxMessages.

use std::collections::HashMap;

use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::{MessageTemplate, OutboxMessageState};
use tenancy_runtime::Reason;

use crate::support::{Env, eventually, fields, id, reason};

pub fn reset_request(key: &str, to: &str) -> pb::SendEmailRequest {
    pb::SendEmailRequest {
        request_id: key.to_owned(),
        to: vec![pb::EmailAddress {
            email: to.to_owned(),
            name: "Ann Example".to_owned(),
        }],
        template: MessageTemplate::PasswordReset as i32,
        template_data: HashMap::from([
            (
                "reset_url".to_owned(),
                "https://portal.example/reset?token=abc123".to_owned(),
            ),
            ("expire_time".to_owned(), "2026-11-23T00:00:00Z".to_owned()),
        ]),
        account_id: String::new(),
    }
}

#[tokio::test]
async fn send_email_queues_one_rendered_message_per_distinct_recipient() {
    let env = Env::start("send_email").await;
    let mut api = env.internal().await;
    let mut request = reset_request("identity:reset:1", "ann@example.com");
    request.to.push(pb::EmailAddress {
        email: " ANN@example.com ".into(),
        name: String::new(),
    });
    request.to.push(pb::EmailAddress {
        email: "bob@example.com".into(),
        name: "Bob".into(),
    });
    let response = api.send_email(request).await.unwrap().into_inner();
    assert!(!response.duplicate);
    assert_eq!(response.messages.len(), 2);
    let first = &response.messages[0];
    assert_eq!(first.to.as_ref().unwrap().email, "ann@example.com");
    assert_eq!(first.subject, "Reset your password");
    assert_eq!(first.template, MessageTemplate::PasswordReset as i32);
    assert_eq!(
        first.template_data["reset_url"],
        "https://portal.example/reset?token=abc123"
    );
    assert_eq!(first.template_data["recipient_email"], "ann@example.com");
    assert_eq!(first.template_data["recipient_name"], "Ann Example");
    assert_eq!(
        response.messages[1].to.as_ref().unwrap().email,
        "bob@example.com"
    );
}

#[tokio::test]
async fn a_retried_send_email_with_the_same_key_sends_once() {
    let env = Env::start("send_email_retry").await;
    let mut api = env.internal().await;
    let first = api
        .send_email(reset_request("identity:reset:2", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let again = api
        .send_email(reset_request("identity:reset:2", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.messages[0].id, first.messages[0].id);
    let listed = api
        .list_outbox_messages(pb::ListOutboxMessagesRequest {
            request_id: "identity:reset:2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.messages.len(), 1);
}

#[tokio::test]
async fn reusing_a_key_with_other_content_is_refused() {
    let env = Env::start("send_email_reuse").await;
    let mut api = env.internal().await;
    api.send_email(reset_request("identity:reset:3", "ann@example.com"))
        .await
        .unwrap();
    let error = api
        .send_email(reset_request("identity:reset:3", "eve@example.com"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&error), Reason::RequestIdReused);
}

#[tokio::test]
async fn a_missing_template_variable_is_named() {
    let env = Env::start("send_email_missing").await;
    let mut api = env.internal().await;
    let mut request = reset_request("identity:reset:4", "ann@example.com");
    request.template_data.remove("reset_url");
    let error = api.send_email(request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&error), Reason::TemplateDataInvalid);
    assert_eq!(fields(&error), ["template_data[reset_url]"]);
}

#[tokio::test]
async fn malformed_send_email_requests_are_refused_with_every_field() {
    let env = Env::start("send_email_invalid").await;
    let mut api = env.internal().await;
    let request = pb::SendEmailRequest {
        request_id: String::new(),
        to: vec![pb::EmailAddress {
            email: "not-an-address".into(),
            name: String::new(),
        }],
        template: 0,
        template_data: HashMap::new(),
        account_id: "nope".into(),
    };
    let error = api.send_email(request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        fields(&error),
        ["request_id", "to[0].email", "template", "account_id"]
    );
    let mut request = reset_request("k", "a@example.com");
    request.to.clear();
    let error = api.send_email(request).await.unwrap_err();
    assert_eq!(fields(&error), ["to"]);
}

#[tokio::test]
async fn the_dev_mailer_delivers_queued_messages_and_records_sent() {
    let env = Env::start("dev_mailer").await;
    let mut api = env.internal().await;
    let sent = api
        .send_email(reset_request("identity:reset:5", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let message_id = sent.messages[0].id.clone();
    eventually(10, "the message to be sent", || {
        let mut api = api.clone();
        let message_id = message_id.clone();
        async move {
            let m = api
                .get_outbox_message(pb::GetOutboxMessageRequest { id: message_id })
                .await
                .unwrap()
                .into_inner()
                .message
                .unwrap();
            m.state == OutboxMessageState::Sent as i32
                && m.attempts == 1
                && m.send_time.is_some()
                && !m.smtp_message_id.is_empty()
        }
    })
    .await;
}

#[tokio::test]
async fn an_unknown_outbox_message_is_not_found() {
    let env = Env::start("outbox_not_found").await;
    let mut api = env.internal().await;
    let error = api
        .get_outbox_message(pb::GetOutboxMessageRequest { id: id() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert_eq!(reason(&error), Reason::OutboxMessageNotFound);
}

#[tokio::test]
async fn outbox_messages_list_newest_first_by_filters_and_pages() {
    let env = Env::start("outbox_list").await;
    let mut api = env.internal().await;
    for i in 0..5 {
        api.send_email(reset_request(&format!("k{i}"), "ann@example.com"))
            .await
            .unwrap();
        env.clock.advance(std::time::Duration::from_millis(10));
    }
    api.send_email(reset_request("other", "bob@example.com"))
        .await
        .unwrap();
    let page = api
        .list_outbox_messages(pb::ListOutboxMessagesRequest {
            to_email: "ANN@example.com".into(),
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = page.messages.iter().map(|m| m.request_id.clone()).collect();
    assert_eq!(keys, ["k4", "k3", "k2"]);
    let next = api
        .list_outbox_messages(pb::ListOutboxMessagesRequest {
            to_email: "ann@example.com".into(),
            page_size: 3,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = next.messages.iter().map(|m| m.request_id.clone()).collect();
    assert_eq!(keys, ["k1", "k0"]);
    assert!(next.next_page_token.is_empty());
    // A token from another filter, or garbage, is refused.
    for token in [page.next_page_token, "garbage".to_owned()] {
        let error = api
            .list_outbox_messages(pb::ListOutboxMessagesRequest {
                to_email: "bob@example.com".into(),
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&error), Reason::PageTokenInvalid);
    }
    let by_template = api
        .list_outbox_messages(pb::ListOutboxMessagesRequest {
            template: MessageTemplate::Invitation as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_template.messages.is_empty());
}

/// The caller is the one its certificate names: the gateway is not among
/// SendEmail's callers (identity, account, support).
#[tokio::test]
async fn the_internal_api_refuses_callers_its_rule_does_not_name() {
    let env = Env::start("outbox_auth").await;
    let channel = env.running.as_ref().unwrap().channel().await;
    let mut gateway =
        tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient::new(
            channel.as_caller(tenancy_runtime::tls::Caller::Gateway),
        );
    let error = gateway
        .send_email(reset_request("k", "a@example.com"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        tenancy_testkit::refusal(&error),
        tenancy_runtime::Reason::CallerNotAllowed
    );
}
