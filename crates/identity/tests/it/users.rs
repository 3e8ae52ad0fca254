//! Sign-up, email verification, and the internal user methods.

use tenancy_proto::identity::*;

use crate::harness::{Env, PASSWORD, reason};

fn sign_up(email: &str, password: &str, name: &str) -> SignUpRequest {
    SignUpRequest {
        email: email.into(),
        password: password.into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn sign_up_sends_a_verification_link_that_verifies_once() {
    let env = Env::start("signup").await;
    let mut c = env.anonymous("198.51.100.1");
    c.sign_up(sign_up(" Alice@Example.COM ", PASSWORD, "Alice"))
        .await
        .unwrap();
    let token = env
        .outbox
        .last_token("alice@example.com", "verify_url")
        .unwrap();
    let verified = c
        .verify_email(VerifyEmailRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.email, "Alice@example.com");
    let again = c
        .verify_email(VerifyEmailRequest { token })
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "EMAIL_TOKEN_INVALID");
    let user = env
        .internal()
        .ensure_user(EnsureUserRequest {
            email: "alice@example.com".into(),
            name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!user.created);
    let user = user.user.unwrap();
    assert!(user.email_verified && user.password_set);
    assert_eq!(user.name, "Alice");
}

#[tokio::test]
async fn verification_links_expire_after_24_hours() {
    let env = Env::start("verifyexp").await;
    let mut c = env.anonymous("198.51.100.1");
    c.sign_up(sign_up("bob@example.com", PASSWORD, "Bob"))
        .await
        .unwrap();
    let token = env
        .outbox
        .last_token("bob@example.com", "verify_url")
        .unwrap();
    env.advance(std::time::Duration::from_secs(24 * 3600 + 1));
    let e = c
        .verify_email(VerifyEmailRequest { token })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&e), "EMAIL_TOKEN_EXPIRED");
    let e = c
        .verify_email(VerifyEmailRequest {
            token: "tnv_nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "EMAIL_TOKEN_INVALID");
}

#[tokio::test]
async fn sign_up_does_not_reveal_a_taken_address() {
    let env = Env::start("signuptaken").await;
    env.verified_user("carol@example.com").await;
    let before = env.outbox.count_to("carol@example.com");
    let mut c = env.anonymous("198.51.100.2");
    // Same (empty) answer; the owner gets a notice with a reset link instead.
    c.sign_up(sign_up(
        "CAROL@example.com",
        "another good passphrase",
        "Mallory",
    ))
    .await
    .unwrap();
    assert_eq!(env.outbox.count_to("carol@example.com"), before + 1);
    assert!(
        env.outbox
            .last_value("carol@example.com", "reset_url")
            .is_some()
    );
    // An unverified address gets its verification message again.
    c.sign_up(sign_up("dave@example.com", PASSWORD, "Dave"))
        .await
        .unwrap();
    c.sign_up(sign_up("dave@example.com", PASSWORD, "Dave"))
        .await
        .unwrap();
    assert_eq!(env.outbox.count_to("dave@example.com"), 2);
}

#[tokio::test]
async fn sign_up_refuses_invalid_input_with_field_violations() {
    let env = Env::start("signupinvalid").await;
    let mut c = env.anonymous("198.51.100.1");
    let cases = [
        (
            sign_up("not-an-email", PASSWORD, "A"),
            "EMAIL_INVALID",
            "email",
        ),
        (
            sign_up("a@example.com", PASSWORD, "  "),
            "NAME_INVALID",
            "name",
        ),
        (
            sign_up("a@example.com", "short pw", "A"),
            "PASSWORD_TOO_SHORT",
            "password",
        ),
        (
            sign_up("a@example.com", &"x".repeat(1025), "A"),
            "PASSWORD_TOO_LONG",
            "password",
        ),
        (
            sign_up("a@example.com", "1qaz2wsx3edc", "A"),
            "PASSWORD_TOO_COMMON",
            "password",
        ),
        (
            sign_up("longname@example.com", "my longname passphrase", "A"),
            "PASSWORD_TOO_COMMON",
            "password",
        ),
    ];
    for (request, expected, field) in cases {
        let e = c.sign_up(request).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(reason(&e), expected);
        assert!(
            tenancy_runtime::error::violated_fields(&e).contains(&field.to_owned()),
            "{expected}"
        );
    }
    assert!(env.outbox.all().is_empty());
}

#[tokio::test]
async fn ensure_user_is_idempotent_and_creates_one_user_under_concurrency() {
    let env = Env::start("ensure").await;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let mut c = env.internal();
        handles.push(tokio::spawn(async move {
            c.ensure_user(EnsureUserRequest {
                email: "Invitee@Example.com".into(),
                name: "Invitee".into(),
            })
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut created = 0;
    let mut ids = Vec::new();
    for h in handles {
        let r = h.await.unwrap();
        created += usize::from(r.created);
        ids.push(r.user.unwrap().id);
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1);
    let again = env
        .internal()
        .ensure_user(EnsureUserRequest {
            email: "invitee@example.com".into(),
            name: "Other Name".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let user = again.user.unwrap();
    assert!(!again.created);
    assert_eq!(user.name, "Invitee");
    assert!(!user.password_set && !user.email_verified);
    let e = env
        .internal()
        .ensure_user(EnsureUserRequest {
            email: "nope".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "EMAIL_INVALID");
}

#[tokio::test]
async fn set_initial_password_works_once_and_verifies_the_email() {
    let env = Env::start("initialpw").await;
    let mut internal = env.internal();
    let user = internal
        .ensure_user(EnsureUserRequest {
            email: "new@example.com".into(),
            name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let e = internal
        .set_initial_password(SetInitialPasswordRequest {
            user_id: user.id.clone(),
            password: "short".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "PASSWORD_TOO_SHORT");
    let set = internal
        .set_initial_password(SetInitialPasswordRequest {
            user_id: user.id.clone(),
            password: PASSWORD.into(),
            name: "Newbie".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(set.password_set && set.email_verified);
    assert_eq!(set.name, "Newbie");
    let e = internal
        .set_initial_password(SetInitialPasswordRequest {
            user_id: user.id.clone(),
            password: PASSWORD.into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&e), "PASSWORD_ALREADY_SET");
    let e = internal
        .set_initial_password(SetInitialPasswordRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
            password: PASSWORD.into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "USER_NOT_FOUND");
}

#[tokio::test]
async fn batch_get_users_keeps_request_order_and_skips_unknown_ids() {
    let env = Env::start("batchget").await;
    let mut internal = env.internal();
    let mut ids = Vec::new();
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        ids.push(
            internal
                .ensure_user(EnsureUserRequest {
                    email: email.into(),
                    name: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap()
                .id,
        );
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    let got = internal
        .batch_get_users(BatchGetUsersRequest {
            user_ids: vec![ids[2].clone(), unknown, ids[0].clone(), ids[2].clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    let got: Vec<_> = got.into_iter().map(|u| u.email).collect();
    assert_eq!(got, ["c@example.com", "a@example.com"]);
    let e = internal
        .batch_get_users(BatchGetUsersRequest {
            user_ids: vec!["x".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "USER_ID_INVALID");
    let e = internal
        .batch_get_users(BatchGetUsersRequest {
            user_ids: vec![ids[0].clone(); 501],
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "TOO_MANY_IDS");
}

#[tokio::test]
async fn internal_methods_refuse_non_service_callers() {
    let env = Env::start("internalonly").await;
    let mut c = tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient::with_interceptor(
        env.channel.clone(),
        tenancy_testkit::Caller::new(
            tenancy_testkit::member("u", "a", tenancy_testkit::Role::Owner),
            std::sync::Arc::new(env.clock.clone()),
        ),
    );
    let e = c
        .ensure_user(EnsureUserRequest {
            email: "x@example.com".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
}
