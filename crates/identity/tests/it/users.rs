//! Sign-up, email verification, and the internal user methods.

use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, PASSWORD, reason};

fn sign_up(email: &str, password: &str, name: &str) -> SignUpRequest {
    SignUpRequest {
        email: email.into(),
        password: password.into(),
        name: name.into(),
        phone: String::new(),
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
        .await
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
    assert_eq!(reason(&again), Reason::EmailTokenInvalid);
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
        .await
        .unwrap();
    env.advance(std::time::Duration::from_secs(24 * 3600 + 1));
    let e = c
        .verify_email(VerifyEmailRequest { token })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&e), Reason::EmailTokenExpired);
    let e = c
        .verify_email(VerifyEmailRequest {
            token: "tnv_nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::EmailTokenInvalid);
}

#[tokio::test]
async fn sign_up_does_not_reveal_a_taken_address() {
    let env = Env::start("signuptaken").await;
    env.verified_user("carol@example.com").await;
    let before = env.outbox.count_to("carol@example.com").await;
    let mut c = env.anonymous("198.51.100.2");
    // Same (empty) answer; the owner gets a notice with a reset link instead.
    c.sign_up(sign_up(
        "CAROL@example.com",
        "another good passphrase",
        "Mallory",
    ))
    .await
    .unwrap();
    assert_eq!(env.outbox.count_to("carol@example.com").await, before + 1);
    assert!(
        env.outbox
            .last_value("carol@example.com", "reset_url")
            .await
            .is_some()
    );
    // An unverified address gets its verification message again.
    c.sign_up(sign_up("dave@example.com", PASSWORD, "Dave"))
        .await
        .unwrap();
    c.sign_up(sign_up("dave@example.com", PASSWORD, "Dave"))
        .await
        .unwrap();
    assert_eq!(env.outbox.count_to("dave@example.com").await, 2);
}

#[tokio::test]
async fn sign_up_refuses_invalid_input_with_field_violations() {
    let env = Env::start("signupinvalid").await;
    let mut c = env.anonymous("198.51.100.1");
    let cases = [
        (
            sign_up("not-an-email", PASSWORD, "A"),
            Reason::EmailInvalid,
            "email",
        ),
        (
            sign_up("a@example.com", PASSWORD, "  "),
            Reason::NameInvalid,
            "name",
        ),
        (
            sign_up("a@example.com", "short pw", "A"),
            Reason::PasswordTooShort,
            "password",
        ),
        (
            sign_up("a@example.com", &"x".repeat(1025), "A"),
            Reason::PasswordTooLong,
            "password",
        ),
        (
            sign_up("a@example.com", "1qaz2wsx3edc", "A"),
            Reason::PasswordTooCommon,
            "password",
        ),
        (
            sign_up("longname@example.com", "my longname passphrase", "A"),
            Reason::PasswordTooCommon,
            "password",
        ),
        (
            SignUpRequest {
                phone: "0170 1234567".into(),
                ..sign_up("a@example.com", PASSWORD, "A")
            },
            Reason::PhoneInvalid,
            "phone",
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
    assert!(env.outbox.all().await.is_empty());
}

/// The code in the last of the SMS `sms` received.
fn code_in(sms: &tenancy_testkit::SmsRequest) -> String {
    let body: serde_json::Value = serde_json::from_str(&sms.body).unwrap();
    let text = body["text"].as_str().unwrap();
    text.split(|c: char| !c.is_ascii_digit())
        .find(|part| part.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// A phone number given at sign-up is sent nothing while the sign-up is
/// anonymous (no SMS pumping): it waits unverified on the sign-up's link.
/// VerifyEmail sends its code by SMS, ConfirmPhone verifies it. A later
/// sign-up for the same unverified address brings its own number: the
/// sign-up verified is the one whose number gets the code.
#[tokio::test]
async fn a_phone_given_at_sign_up_gets_its_code_only_once_the_email_is_verified() {
    let sms = tenancy_testkit::SmsServer::start().await;
    let sms_url = sms.url();
    let env = Env::start_with("signupphone", move |config| {
        config.sms.url = Some(sms_url);
        config.sms.authorization = Some("Bearer sms-test-key".into());
    })
    .await;
    let email = "phoebe@example.com";
    let mut c = env.anonymous("198.51.100.1");
    let sms_queued = || async {
        env.outbox
            .all()
            .await
            .into_iter()
            .filter(|m| {
                m.template() == tenancy_proto::contacts::MessageTemplate::PhoneVerificationSms
            })
            .count()
    };
    c.sign_up(SignUpRequest {
        phone: "+44 20 7946 0958".into(),
        ..sign_up(email, PASSWORD, "Phoebe")
    })
    .await
    .unwrap();
    let first = env.outbox.wait_token(email, "verify_url", None).await;
    c.sign_up(SignUpRequest {
        phone: "+49 151 2345 6789".into(),
        ..sign_up(email, PASSWORD, "Phoebe")
    })
    .await
    .unwrap();
    let second = env
        .outbox
        .wait_token(email, "verify_url", Some(&first))
        .await;
    // Sign-ups queue no SMS (SendPhoneCode queues before it answers).
    assert_eq!(sms_queued().await, 0);
    assert!(sms.received().is_empty());

    c.verify_email(VerifyEmailRequest { token: second })
        .await
        .unwrap();
    assert_eq!(sms_queued().await, 1);
    let received = sms.wait_for(1).await;
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(body["to"], "+4915123456789");
    let code = code_in(&received[0]);

    let session = env.login(email).await;
    let mut me = env.in_session(&session.user_id, &session.session_id, None);
    let before = me.get_me(GetMeRequest {}).await.unwrap().into_inner();
    assert_eq!(
        before.user.unwrap().phone,
        "",
        "verified before ConfirmPhone"
    );
    me.confirm_phone(ConfirmPhoneRequest { code })
        .await
        .unwrap();
    let after = me.get_me(GetMeRequest {}).await.unwrap().into_inner();
    assert_eq!(after.user.unwrap().phone, "+4915123456789");
    assert_eq!(sms_queued().await, 1);
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
    assert_eq!(reason(&e), Reason::EmailInvalid);
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
    assert_eq!(reason(&e), Reason::PasswordTooShort);
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
    assert_eq!(reason(&e), Reason::PasswordAlreadySet);
    let e = internal
        .set_initial_password(SetInitialPasswordRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
            password: PASSWORD.into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::UserNotFound);
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
    assert_eq!(reason(&e), Reason::UserIdInvalid);
    let e = internal
        .batch_get_users(BatchGetUsersRequest {
            user_ids: vec![ids[0].clone(); 501],
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ListTooLong);
}

/// EnsureUser is for the account service: the gateway's certificate, even
/// with a user's signed principal, is refused.
#[tokio::test]
async fn internal_methods_refuse_callers_their_rule_does_not_name() {
    let env = Env::start("internalonly").await;
    let mut c = tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient::with_interceptor(
        env.channel.as_caller(tenancy_runtime::tls::Caller::Gateway),
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
    assert_eq!(reason(&e), Reason::CallerNotAllowed);
}

fn update(name: &str, email: &str, paths: &[&str]) -> UpdateMeRequest {
    UpdateMeRequest {
        user: Some(User {
            name: name.into(),
            email: email.into(),
            ..User::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    }
}

#[tokio::test]
async fn update_me_changes_the_name_at_once_and_only_masked_fields() {
    let env = Env::start("updatename").await;
    let user = env.verified_user("nia@example.com").await;
    let s = env.login("nia@example.com").await;
    let mut c = env.in_session(&user, &s.session_id, None);
    let me = c
        .update_me(update("  Nia Long ", "ignored@example.com", &["name"]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.name, "Nia Long");
    assert_eq!(me.email, "nia@example.com");
    assert!(me.pending_email.is_empty());
    for paths in [&[][..], &["password"], &["name", "staff"]] {
        let e = c.update_me(update("X", "", paths)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{paths:?}");
        assert_eq!(reason(&e), Reason::UpdateMaskInvalid, "{paths:?}");
    }
    let e = c.update_me(update("  ", "", &["name"])).await.unwrap_err();
    assert_eq!(reason(&e), Reason::NameInvalid);
    let e = c
        .update_me(update("", "not-an-address", &["email"]))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::EmailInvalid);
    // A name change needs no recent authentication.
    env.advance(std::time::Duration::from_secs(3600));
    c.update_me(update("Nia", "", &["name"])).await.unwrap();
}

#[tokio::test]
async fn an_email_change_needs_recent_authentication_and_applies_once_verified() {
    let env = Env::start("updateemail").await;
    let user = env.verified_user("oli@example.com").await;
    let s = env.login("oli@example.com").await;
    let mut c = env.in_session(&user, &s.session_id, None);
    env.advance(std::time::Duration::from_secs(15 * 60 + 1));
    let e = c
        .update_me(update("", "oliver@example.org", &["email"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&e), Reason::ReauthRequired);
    assert!(
        env.outbox
            .last_token("oliver@example.org", "verify_url")
            .await
            .is_none()
    );
    c.reauthenticate(ReauthenticateRequest {
        password: PASSWORD.into(),
        second_factor: None,
    })
    .await
    .unwrap();
    let me = c
        .update_me(update("", " Oliver@Example.ORG ", &["email"]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.email, "oli@example.com");
    assert_eq!(me.pending_email, "Oliver@example.org");
    // The old address is told, with both addresses.
    assert_eq!(
        env.outbox
            .last_value("oli@example.com", "new_email")
            .await
            .as_deref(),
        Some("Oliver@example.org")
    );
    // Until verified, the old address still logs in.
    env.login("oli@example.com").await;
    let token = env
        .outbox
        .last_token("oliver@example.org", "verify_url")
        .await
        .unwrap();
    let mut anon = env.anonymous("198.51.100.1");
    anon.verify_email(VerifyEmailRequest { token })
        .await
        .unwrap();
    let me = c
        .get_me(GetMeRequest {})
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.email, "Oliver@example.org");
    assert!(me.pending_email.is_empty() && me.email_verified);
    env.login("oliver@example.org").await;
    let e = anon
        .login(LoginRequest {
            email: "oli@example.com".into(),
            password: PASSWORD.into(),
            account_id: String::new(),
            unlock_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn an_email_change_to_a_taken_address_is_refused_only_at_verification() {
    let env = Env::start("updatetaken").await;
    let user = env.verified_user("pia@example.com").await;
    env.verified_user("quinn@example.com").await;
    let s = env.login("pia@example.com").await;
    let mut c = env.in_session(&user, &s.session_id, None);
    // The answer does not reveal that the address is registered.
    let me = c
        .update_me(update("", "QUINN@example.com", &["email"]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.pending_email, "QUINN@example.com");
    let token = env
        .outbox
        .last_token("quinn@example.com", "verify_url")
        .await
        .unwrap();
    let e = env
        .anonymous("198.51.100.1")
        .verify_email(VerifyEmailRequest { token })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&e), Reason::EmailTaken);
    let me = c
        .get_me(GetMeRequest {})
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.email, "pia@example.com");
}

/// Logs in with `password`; the refusal's reason, or `None` for a session.
async fn login_refusal(env: &Env, email: &str, password: &str) -> Option<Reason> {
    env.anonymous("198.51.100.9")
        .login(LoginRequest {
            email: email.into(),
            password: password.into(),
            account_id: String::new(),
            unlock_token: String::new(),
        })
        .await
        .err()
        .map(|e| reason(&e))
}

/// The name and whether a password is set, for the user with `email`.
async fn profile_of(env: &Env, email: &str) -> (String, bool, bool) {
    let user = env
        .internal()
        .ensure_user(EnsureUserRequest {
            email: email.into(),
            name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    (user.name, user.password_set, user.email_verified)
}

const ATTACKER_PASSWORD: &str = "mallory's own passphrase";

#[tokio::test]
async fn a_verification_link_activates_only_the_sign_up_it_was_sent_for() {
    let env = Env::start("preaccount").await;
    let mut attacker = env.anonymous("203.0.113.66");
    let first = attacker
        .sign_up(sign_up("victim@example.com", ATTACKER_PASSWORD, "Mallory"))
        .await
        .unwrap()
        .into_inner();
    let attackers_link = env
        .outbox
        .wait_token("victim@example.com", "verify_url", None)
        .await;
    // Unverified, the attacker's password opens nothing.
    assert_eq!(
        login_refusal(&env, "victim@example.com", ATTACKER_PASSWORD).await,
        Some(Reason::EmailNotVerified)
    );

    // The victim signs up later: the same answer as for a new address.
    let mut victim = env.anonymous("198.51.100.1");
    let second = victim
        .sign_up(sign_up("victim@example.com", PASSWORD, "Victoria"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    let victims_link = env
        .outbox
        .wait_token("victim@example.com", "verify_url", Some(&attackers_link))
        .await;
    victim
        .verify_email(VerifyEmailRequest {
            token: victims_link,
        })
        .await
        .unwrap();

    // The victim's credentials, and only theirs.
    assert_eq!(
        login_refusal(&env, "victim@example.com", PASSWORD).await,
        None
    );
    assert_eq!(
        login_refusal(&env, "victim@example.com", ATTACKER_PASSWORD).await,
        Some(Reason::CredentialsInvalid)
    );
    assert_eq!(
        profile_of(&env, "victim@example.com").await,
        ("Victoria".to_owned(), true, true)
    );
    // The attacker's link died with the victim's.
    let e = attacker
        .verify_email(VerifyEmailRequest {
            token: attackers_link,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::EmailTokenInvalid);
    assert_eq!(
        login_refusal(&env, "victim@example.com", ATTACKER_PASSWORD).await,
        Some(Reason::CredentialsInvalid)
    );
}

#[tokio::test]
async fn a_later_sign_up_does_not_void_the_earlier_ones_link() {
    let env = Env::start("preaccountlater").await;
    let mut victim = env.anonymous("198.51.100.1");
    victim
        .sign_up(sign_up("vic@example.com", PASSWORD, "Vic"))
        .await
        .unwrap();
    let victims_link = env
        .outbox
        .wait_token("vic@example.com", "verify_url", None)
        .await;
    // An attacker signs up for the same address before the victim clicks.
    env.anonymous("203.0.113.66")
        .sign_up(sign_up("vic@example.com", ATTACKER_PASSWORD, "Mallory"))
        .await
        .unwrap();
    let attackers_link = env
        .outbox
        .wait_token("vic@example.com", "verify_url", Some(&victims_link))
        .await;
    victim
        .verify_email(VerifyEmailRequest {
            token: victims_link,
        })
        .await
        .unwrap();
    assert_eq!(login_refusal(&env, "vic@example.com", PASSWORD).await, None);
    assert_eq!(
        login_refusal(&env, "vic@example.com", ATTACKER_PASSWORD).await,
        Some(Reason::CredentialsInvalid)
    );
    let e = victim
        .verify_email(VerifyEmailRequest {
            token: attackers_link,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::EmailTokenInvalid);
    assert_eq!(profile_of(&env, "vic@example.com").await.0, "Vic");
}

#[tokio::test]
async fn a_person_added_as_a_member_gets_the_password_of_their_own_sign_up() {
    let env = Env::start("preaccountmember").await;
    let owner = env.verified_user("owner@example.com").await;
    let account = env.create_account(&owner).await;
    env.add_member(
        &account,
        &owner,
        "pat@example.com",
        "Pat (typed by the owner)",
    )
    .await;
    assert_eq!(
        profile_of(&env, "pat@example.com").await,
        ("Pat (typed by the owner)".to_owned(), false, false)
    );
    let mut pat = env.anonymous("198.51.100.3");
    pat.sign_up(sign_up("pat@example.com", PASSWORD, "Pat"))
        .await
        .unwrap();
    let link = env
        .outbox
        .wait_token("pat@example.com", "verify_url", None)
        .await;
    pat.verify_email(VerifyEmailRequest { token: link })
        .await
        .unwrap();
    assert_eq!(login_refusal(&env, "pat@example.com", PASSWORD).await, None);
    assert_eq!(
        profile_of(&env, "pat@example.com").await,
        ("Pat".to_owned(), true, true)
    );
}
