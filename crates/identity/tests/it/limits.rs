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
