//! Links anyone can have emailed (issue 21 §7): a bounded number per
//! address and window, the rest answered alike but not sent; only the
//! newest reset link works.

use std::time::{Duration, Instant};

use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, PASSWORD, reason};

/// The default `mail.max_per_recipient`.
const PER_HOUR: usize = 5;

/// Waits until `to` got `expected` messages of `template` (the reset's
/// lookup runs after the answer), then a little longer to see that no
/// more come; the messages.
async fn settled(
    env: &Env,
    to: &str,
    template: MessageTemplate,
    expected: usize,
) -> Vec<tenancy_proto::contacts::OutboxMessage> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.outbox.sent(to, template).await.len() < expected {
        assert!(Instant::now() < deadline, "fewer than {expected} messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.outbox.sent(to, template).await
}

fn token_of(message: &tenancy_proto::contacts::OutboxMessage, key: &str) -> String {
    message.template_data[key]
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn password_reset_links_to_one_address_are_bounded_and_only_the_newest_works() {
    let env = Env::start("mailbomb").await;
    env.verified_user("bombed@example.com").await; // one link (verification)
    for i in 0..40 {
        env.anonymous(&format!("203.0.113.{}", i % 4 + 1))
            .request_password_reset(RequestPasswordResetRequest {
                email: "bombed@example.com".into(),
            })
            .await
            .unwrap();
    }
    let resets = settled(
        &env,
        "bombed@example.com",
        MessageTemplate::PasswordReset,
        PER_HOUR - 1,
    )
    .await;
    assert_eq!(resets.len(), PER_HOUR - 1, "one link per request sent");
    assert_eq!(
        env.outbox.count_to("bombed@example.com").await,
        PER_HOUR,
        "the verification and the resets"
    );
    // Earlier links died with each new one: exactly one is live (probed
    // with a password too short, refused after the link is checked).
    let mut c = env.anonymous("198.51.100.1");
    let mut live = Vec::new();
    for link in &resets {
        let token = token_of(link, "reset_url");
        let e = c
            .reset_password(ResetPasswordRequest {
                token: token.clone(),
                new_password: "short".into(),
            })
            .await
            .unwrap_err();
        match reason(&e) {
            Reason::PasswordTooShort => live.push(token),
            other => assert_eq!(other, Reason::ResetTokenInvalid),
        }
    }
    assert_eq!(live.len(), 1, "live reset links");
    // It survived the requests over the bound (nothing was made for them).
    c.reset_password(ResetPasswordRequest {
        token: live.remove(0),
        new_password: "a brand new passphrase".into(),
    })
    .await
    .unwrap();
    // A sign-up of the taken address (which would send a reset link) is
    // bounded by the same count.
    c.sign_up(SignUpRequest {
        email: "bombed@example.com".into(),
        password: PASSWORD.into(),
        name: "Mallory".into(),
        phone: String::new(),
    })
    .await
    .unwrap();
    // The next window allows links again.
    env.advance(Duration::from_secs(3601));
    c.request_password_reset(RequestPasswordResetRequest {
        email: "bombed@example.com".into(),
    })
    .await
    .unwrap();
    let resets = settled(
        &env,
        "bombed@example.com",
        MessageTemplate::PasswordReset,
        PER_HOUR,
    )
    .await;
    assert_eq!(resets.len(), PER_HOUR);
}

#[tokio::test]
async fn verification_links_to_one_address_are_bounded() {
    let env = Env::start("mailbombverify").await;
    for i in 0..12 {
        env.anonymous(&format!("203.0.113.{}", i % 4 + 1))
            .sign_up(SignUpRequest {
                email: "pending@example.com".into(),
                password: PASSWORD.into(),
                name: "Pending".into(),
                phone: String::new(),
            })
            .await
            .unwrap();
    }
    let to = "pending@example.com";
    let template = MessageTemplate::EmailVerification;
    assert_eq!(settled(&env, to, template, PER_HOUR).await.len(), PER_HOUR);
    // A login before verification resends the link (at most every ten
    // minutes): bounded by the same count.
    let login = async || {
        let e = env
            .anonymous("198.51.100.1")
            .login(LoginRequest {
                email: to.into(),
                password: PASSWORD.into(),
                account_id: String::new(),
                unlock_token: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::EmailNotVerified);
    };
    env.advance(Duration::from_secs(601));
    login().await;
    assert_eq!(settled(&env, to, template, PER_HOUR).await.len(), PER_HOUR);
    // In the next window it is sent, and it is a link for the sign-up.
    env.advance(Duration::from_secs(3600));
    login().await;
    let sent = settled(&env, to, template, PER_HOUR + 1).await;
    assert_eq!(sent.len(), PER_HOUR + 1);
    env.anonymous("198.51.100.1")
        .verify_email(VerifyEmailRequest {
            token: token_of(sent.last().unwrap(), "verify_url"),
        })
        .await
        .unwrap();
    env.login(to).await;
}
