//! Retention: delivered messages, failed ones and old verification tokens
//! are removed once past their time (by the injected clock), not before.

use std::collections::HashMap;
use std::time::Duration;

use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::{ContactRole, MessageTemplate, OutboxMessageState};
use tenancy_runtime::Reason;
use tenancy_testkit::Role;

use crate::contacts::verification_token;
use crate::support::{Env, Internal, eventually, id, reason, smtp_server};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn email(key: &str, to: &str) -> pb::SendEmailRequest {
    pb::SendEmailRequest {
        request_id: key.to_owned(),
        to: vec![pb::EmailAddress {
            email: to.to_owned(),
            name: String::new(),
        }],
        template: MessageTemplate::GenericNotification as i32,
        template_data: HashMap::from([
            ("subject".to_owned(), "s".to_owned()),
            ("body".to_owned(), "b".to_owned()),
        ]),
        account_id: String::new(),
    }
}

async fn state(api: &Internal, id: &str) -> Result<i32, tonic::Code> {
    api.clone()
        .get_outbox_message(pb::GetOutboxMessageRequest { id: id.to_owned() })
        .await
        .map(|r| r.into_inner().message.unwrap().state)
        .map_err(|s| s.code())
}

/// Whether repeating the first SendEmail is answered as a duplicate.
async fn repeat_is_duplicate(api: &Internal) -> bool {
    api.clone()
        .send_email(email("k:sent", "ann@example.com"))
        .await
        .unwrap()
        .into_inner()
        .duplicate
}

#[tokio::test]
async fn sent_messages_go_after_30_days_failed_ones_after_90_and_old_tokens_with_them() {
    let sink = smtp_server().await;
    let url = sink.url();
    let env = Env::start_with("retention", |c| c.smtp_url = Some(url)).await;
    let api = env.internal().await;
    let send = |key: &'static str, to: &'static str| {
        let api = api.clone();
        async move {
            api.clone()
                .send_email(email(key, to))
                .await
                .unwrap()
                .into_inner()
                .messages[0]
                .id
                .clone()
        }
    };
    let sent = send("k:sent", "ann@example.com").await;
    let failed = send("k:failed", "reject-me@example.com").await;
    let account = id();
    env.member(&id(), &account, Role::Owner)
        .await
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Pat".into(),
                email: "pat@example.com".into(),
                roles: vec![ContactRole::Technical as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let token = verification_token(&api, "pat@example.com").await;
    eventually(15, "delivery and failure", || {
        let api = api.clone();
        let (sent, failed) = (sent.clone(), failed.clone());
        async move {
            state(&api, &sent).await == Ok(OutboxMessageState::Sent as i32)
                && state(&api, &failed).await == Ok(OutboxMessageState::Failed as i32)
        }
    })
    .await;
    let verify = || {
        let token = token.clone();
        let env = &env;
        async move {
            env.anonymous()
                .await
                .verify_contact_email(pb::VerifyContactEmailRequest { token })
                .await
                .unwrap_err()
        }
    };

    // 29 days on: everything is kept (a run happens within a tick).
    env.clock.advance(29 * DAY);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        state(&api, &sent).await,
        Ok(OutboxMessageState::Sent as i32)
    );
    assert_eq!(reason(&verify().await), Reason::VerificationTokenExpired);
    assert!(
        repeat_is_duplicate(&api).await,
        "the key is still remembered"
    );

    // 40 days on: the sent message, its key and the expired token are gone;
    // the failed message stays.
    env.clock.advance(11 * DAY);
    eventually(15, "the sent message pruned", || {
        let api = api.clone();
        let sent = sent.clone();
        async move { state(&api, &sent).await == Err(tonic::Code::NotFound) }
    })
    .await;
    assert_eq!(
        state(&api, &failed).await,
        Ok(OutboxMessageState::Failed as i32)
    );
    assert_eq!(reason(&verify().await), Reason::VerificationTokenInvalid);
    assert!(
        !repeat_is_duplicate(&api).await,
        "a forgotten key queues anew"
    );

    // 91 days on: the failed message is gone too.
    env.clock.advance(51 * DAY);
    eventually(15, "the failed message pruned", || {
        let api = api.clone();
        let failed = failed.clone();
        async move { state(&api, &failed).await == Err(tonic::Code::NotFound) }
    })
    .await;
}
