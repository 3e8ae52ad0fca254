//! Request-size limits at the edge (issue 21 §6): every repeated field and
//! every token-like string has a documented bound, refused as
//! INVALID_ARGUMENT naming the field, before any work is done.

use std::time::{Duration, Instant};

use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, reason};

/// The field the refusal's BadRequest names.
fn field_of(e: &tonic::Status) -> String {
    let details = tonic_types::StatusExt::get_error_details(e);
    details.bad_request().unwrap().field_violations[0]
        .field
        .clone()
}

fn refused(e: &tonic::Status, want: Reason, field: &str) {
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_eq!(reason(e), want, "{e:?}");
    assert_eq!(field_of(e), field);
}

#[tokio::test]
async fn long_filter_lists_are_refused_naming_the_field() {
    let env = Env::start("limitslists").await;
    let user = env.verified_user("lists@example.com").await;
    let s = env.login("lists@example.com").await;
    let mut c = env.in_session(&user, &s.session_id, None);
    let many = vec![LoginMethod::Password as i32; 40_000];
    let started = Instant::now();
    let e = c
        .list_login_events(ListLoginEventsRequest {
            methods: many.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, Reason::ListTooLong, "methods");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let e = c
        .list_login_events(ListLoginEventsRequest {
            outcomes: vec![LoginOutcome::Success as i32; 17],
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, Reason::ListTooLong, "outcomes");
    // At the bound it is answered.
    let events = c
        .list_login_events(ListLoginEventsRequest {
            methods: vec![LoginMethod::Password as i32; 16],
            outcomes: vec![LoginOutcome::Success as i32; 16],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .login_events;
    assert_eq!(events.len(), 1);
    let account = env.create_account(&user).await;
    let e = env
        .as_principal(tenancy_testkit::member(
            &user,
            &account,
            tenancy_testkit::Role::Owner,
        ))
        .list_api_tokens(ListApiTokensRequest {
            states: vec![ApiTokenState::Active as i32; 1000],
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, Reason::ListTooLong, "states");
    let e = c
        .list_login_events(ListLoginEventsRequest {
            page_token: "x".repeat(100_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, Reason::PageTokenInvalid, "page_token");
}

#[tokio::test]
async fn oversized_tokens_are_refused_naming_the_field() {
    let env = Env::start("limitstokens").await;
    let mut c = env.anonymous("198.51.100.1");
    let huge = "tnv_".to_owned() + &"a".repeat(1_000_000);
    let e = c
        .verify_email(VerifyEmailRequest {
            token: huge.clone(),
        })
        .await
        .unwrap_err();
    refused(&e, Reason::EmailTokenInvalid, "token");
    let e = c
        .reset_password(ResetPasswordRequest {
            token: huge.clone(),
            new_password: "a brand new passphrase".into(),
        })
        .await
        .unwrap_err();
    refused(&e, Reason::ResetTokenInvalid, "token");
    let e = c
        .refresh_session(RefreshSessionRequest {
            refresh_token: huge.clone(),
        })
        .await
        .unwrap_err();
    refused(&e, Reason::FieldInvalid, "refresh_token");
    let e = c
        .complete_mfa(CompleteMfaRequest {
            challenge_token: huge,
            second_factor: Some(complete_mfa_request::SecondFactor::TotpCode(
                "123456".into(),
            )),
        })
        .await
        .unwrap_err();
    refused(&e, Reason::FieldInvalid, "challenge_token");
}

/// The description of the refusal's first field violation.
fn described(e: &tonic::Status) -> String {
    let details = tonic_types::StatusExt::get_error_details(e);
    details.bad_request().unwrap().field_violations[0]
        .description
        .clone()
}

/// Refused at the edge: the right code and reason, the field, and the
/// bound in the description (not the answer a checked value gets).
fn capped(e: &tonic::Status, want: Reason, field: &str, bytes: usize) {
    refused(e, want, field);
    assert_eq!(described(e), format!("at most {bytes} bytes"), "{e:?}");
}

/// Second-factor codes (64 bytes), passwords given as proof (1024 bytes),
/// unlock tokens and session page tokens (512 bytes) are refused at the
/// edge before they are hashed or counted: an oversized attempt neither
/// spends a challenge's tries nor starts a back-off.
#[tokio::test]
async fn oversized_codes_passwords_and_page_tokens_are_refused_at_the_edge() {
    use complete_mfa_request::SecondFactor;
    let env = Env::start("limitscodes").await;
    let (user, secret, _) = crate::mfa::enrolled(&env, "caps@example.com").await;
    let long_code = "1".repeat(65);
    let long_password = "p".repeat(1025);
    let mut anonymous = env.anonymous("198.51.100.1");
    let t = crate::mfa::challenge(&env, "caps@example.com").await;
    for _ in 0..6 {
        for factor in [
            SecondFactor::TotpCode(long_code.clone()),
            SecondFactor::RecoveryCode(long_code.clone()),
        ] {
            let field = match factor {
                SecondFactor::TotpCode(_) => "totp_code",
                SecondFactor::RecoveryCode(_) => "recovery_code",
                SecondFactor::PasskeyCredentialJson(_) => unreachable!(),
            };
            let e = anonymous
                .complete_mfa(crate::mfa::answer(&t, factor))
                .await
                .unwrap_err();
            capped(&e, Reason::SecondFactorInvalid, field, 64);
        }
    }
    // None of them was counted: the challenge still takes the right code.
    let s = anonymous
        .complete_mfa(crate::mfa::answer(
            &t,
            SecondFactor::TotpCode(crate::mfa::code(&secret, crate::mfa::now_s(&env))),
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    env.advance(Duration::from_secs(60));
    let mut c = env.in_session(&user, &s.session_id, None);
    for _ in 0..6 {
        let e = c
            .reauthenticate(ReauthenticateRequest {
                password: long_password.clone(),
                second_factor: None,
            })
            .await
            .unwrap_err();
        capped(&e, Reason::PasswordIncorrect, "password", 1024);
        let e = c
            .reauthenticate(ReauthenticateRequest {
                password: crate::harness::PASSWORD.into(),
                second_factor: Some(reauthenticate_request::SecondFactor::TotpCode(
                    long_code.clone(),
                )),
            })
            .await
            .unwrap_err();
        capped(&e, Reason::SecondFactorInvalid, "totp_code", 64);
        let e = c
            .change_password(ChangePasswordRequest {
                current_password: long_password.clone(),
                new_password: "another long passphrase".into(),
            })
            .await
            .unwrap_err();
        capped(&e, Reason::PasswordIncorrect, "current_password", 1024);
        let e = c
            .disable_totp(DisableTotpRequest {
                proof: Some(disable_totp_request::Proof::Password(long_password.clone())),
            })
            .await
            .unwrap_err();
        capped(&e, Reason::PasswordIncorrect, "password", 1024);
        let e = c
            .regenerate_recovery_codes(RegenerateRecoveryCodesRequest {
                proof: Some(regenerate_recovery_codes_request::Proof::TotpCode(
                    long_code.clone(),
                )),
            })
            .await
            .unwrap_err();
        capped(&e, Reason::SecondFactorInvalid, "totp_code", 64);
    }
    // No back-off started: the right proof works at once.
    c.reauthenticate(ReauthenticateRequest {
        password: crate::harness::PASSWORD.into(),
        second_factor: Some(reauthenticate_request::SecondFactor::TotpCode(
            crate::mfa::code(&secret, crate::mfa::now_s(&env)),
        )),
    })
    .await
    .unwrap();
    let e = c
        .list_sessions(ListSessionsRequest {
            page_token: "x".repeat(513),
            ..Default::default()
        })
        .await
        .unwrap_err();
    capped(&e, Reason::PageTokenInvalid, "page_token", 512);
    let account = env.create_account(&user).await;
    let e = env
        .as_principal(tenancy_testkit::member(
            &user,
            &account,
            tenancy_testkit::Role::Owner,
        ))
        .list_member_sessions(ListMemberSessionsRequest {
            user_id: user.clone(),
            page_token: "x".repeat(513),
            ..Default::default()
        })
        .await
        .unwrap_err();
    capped(&e, Reason::PageTokenInvalid, "page_token", 512);
    let e = anonymous
        .login(LoginRequest {
            email: "caps@example.com".into(),
            password: crate::harness::PASSWORD.into(),
            account_id: String::new(),
            unlock_token: "x".repeat(513),
        })
        .await
        .unwrap_err();
    capped(&e, Reason::FieldInvalid, "unlock_token", 512);
    // A new enrolment's code is capped the same way.
    let other = env.verified_user("caps2@example.com").await;
    let s2 = env.login("caps2@example.com").await;
    let mut c2 = env.in_session(&other, &s2.session_id, None);
    c2.begin_totp_enrollment(BeginTotpEnrollmentRequest {})
        .await
        .unwrap();
    let e = c2
        .confirm_totp_enrollment(ConfirmTotpEnrollmentRequest {
            totp_code: long_code,
        })
        .await
        .unwrap_err();
    capped(&e, Reason::SecondFactorInvalid, "totp_code", 64);
}
