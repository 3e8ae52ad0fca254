//! Which account a new token selects when the client names none
//! (LoginRequest.account_id): the one last selected while the user is still
//! an ACTIVE member of it, else the earliest-joined ACTIVE membership, else
//! none; the same for CompleteMfa and RefreshSession. Memberships live in
//! the real account service.

use std::time::{Duration, Instant};

use tenancy_proto::identity::complete_mfa_request::SecondFactor;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, PASSWORD, reason};
use crate::mfa::{challenge, challenge_by, code, enroll, now_s};

/// The account a login of `email` (no 2FA, no account named) selects.
async fn login_account(env: &Env, email: &str) -> String {
    env.login(email).await.access_token.unwrap().account_id
}

/// Ann owns "first" (joined first) and joins Olga's "second" afterwards.
struct TwoAccounts {
    ann: String,
    olga: String,
    first: String,
    second: String,
}

async fn two_accounts(env: &Env) -> TwoAccounts {
    let ann = env.verified_user("ann@example.com").await;
    let olga = env.verified_user("olga@example.com").await;
    let first = env.create_account(&ann).await;
    env.advance(Duration::from_secs(1));
    let second = env.create_account(&olga).await;
    env.join(&second, &olga, "ann@example.com").await;
    TwoAccounts {
        ann,
        olga,
        first,
        second,
    }
}

async fn switch(env: &Env, user: &str, session: &SessionCredentials, account: &str) {
    env.in_session(user, &session.session_id, None)
        .switch_account(SwitchAccountRequest {
            account_id: account.into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn login_selects_the_last_selected_account_while_the_user_is_active_in_it() {
    let env = Env::start("select_last").await;
    let t = two_accounts(&env).await;
    // Never selected one: the earliest joined.
    assert_eq!(login_account(&env, "ann@example.com").await, t.first);
    // Selected "second": logins land there from now on.
    let s = env.login("ann@example.com").await;
    switch(&env, &t.ann, &s, &t.second).await;
    assert_eq!(login_account(&env, "ann@example.com").await, t.second);
    assert_eq!(login_account(&env, "ann@example.com").await, t.second);
}

#[tokio::test]
async fn login_falls_back_to_the_first_active_membership_when_the_last_is_suspended_or_revoked() {
    let env = Env::start("select_fallback").await;
    let t = two_accounts(&env).await;
    let s = env.login("ann@example.com").await;
    switch(&env, &t.ann, &s, &t.second).await;
    env.suspend(&t.second, &t.olga, &t.ann).await;
    assert_eq!(login_account(&env, "ann@example.com").await, t.first);
    // Back in "second" and selected again, then revoked there.
    env.reactivate(&t.second, &t.olga, &t.ann).await;
    let s = env.login("ann@example.com").await;
    switch(&env, &t.ann, &s, &t.second).await;
    assert_eq!(login_account(&env, "ann@example.com").await, t.second);
    env.revoke(&t.second, &t.olga, &t.ann).await;
    assert_eq!(login_account(&env, "ann@example.com").await, t.first);
}

#[tokio::test]
async fn login_selects_no_account_without_an_active_membership() {
    let env = Env::start("select_none").await;
    env.verified_user("solo@example.com").await;
    assert_eq!(login_account(&env, "solo@example.com").await, "");
    // Olga's only other member, suspended: nothing to select either.
    let t = two_accounts(&env).await;
    let bob = env.verified_user("bob@example.com").await;
    env.join(&t.second, &t.olga, "bob@example.com").await;
    assert_eq!(login_account(&env, "bob@example.com").await, t.second);
    env.suspend(&t.second, &t.olga, &bob).await;
    assert_eq!(login_account(&env, "bob@example.com").await, "");
}

#[tokio::test]
async fn complete_mfa_selects_the_account_as_login_does() {
    let env = Env::start("select_mfa").await;
    let t = two_accounts(&env).await;
    let s = env.login("ann@example.com").await;
    switch(&env, &t.ann, &s, &t.second).await;
    let (secret, _) = enroll(&env, &t.ann, &s).await;
    let complete = |token: String| {
        let env = &env;
        let secret = secret.clone();
        async move {
            env.anonymous("198.51.100.7")
                .complete_mfa(CompleteMfaRequest {
                    challenge_token: token,
                    second_factor: Some(SecondFactor::TotpCode(code(&secret, now_s(env)))),
                })
                .await
        }
    };
    let session = complete(challenge(&env, "ann@example.com").await)
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(session.access_token.unwrap().account_id, t.second);
    // Suspended in the last selected one between Login and CompleteMfa:
    // the account is chosen at CompleteMfa.
    env.advance(Duration::from_secs(30));
    let token = challenge(&env, "ann@example.com").await;
    env.suspend(&t.second, &t.olga, &t.ann).await;
    let session = complete(token).await.unwrap().into_inner().session.unwrap();
    assert_eq!(session.access_token.unwrap().account_id, t.first);
}

#[tokio::test]
async fn complete_mfa_refuses_a_named_account_left_meanwhile_without_spending_the_code() {
    let env = Env::start("select_mfa_named").await;
    let t = two_accounts(&env).await;
    let s = env.login("ann@example.com").await;
    let (secret, _) = enroll(&env, &t.ann, &s).await;
    let mut anonymous = env.anonymous("198.51.100.7");
    let named_second = challenge_by(&mut anonymous, "ann@example.com", &t.second).await;
    env.suspend(&t.second, &t.olga, &t.ann).await;
    let current = code(&secret, now_s(&env));
    let e = anonymous
        .complete_mfa(CompleteMfaRequest {
            challenge_token: named_second,
            second_factor: Some(SecondFactor::TotpCode(current.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e)),
        (tonic::Code::PermissionDenied, Reason::NotAMember)
    );
    // The code was not spent: it completes a login into "first".
    let named_first = challenge_by(&mut anonymous, "ann@example.com", &t.first).await;
    let session = anonymous
        .complete_mfa(CompleteMfaRequest {
            challenge_token: named_first,
            second_factor: Some(SecondFactor::TotpCode(current)),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(session.access_token.unwrap().account_id, t.first);
}

#[tokio::test]
async fn refresh_keeps_the_sessions_account_and_otherwise_chooses_as_login_does() {
    let env = Env::start("select_refresh").await;
    let ann = env.verified_user("ann@example.com").await;
    // No account yet: the session selects none...
    let s = env.login("ann@example.com").await;
    assert_eq!(s.access_token.as_ref().unwrap().account_id, "");
    // ...until the user has one: the next refresh selects it.
    let first = env.create_account(&ann).await;
    let s = env.refresh(s.refresh_token).await;
    assert_eq!(s.access_token.as_ref().unwrap().account_id, first);
    // A session in "second" stays there while Ann is active in it...
    let olga = env.verified_user("olga@example.com").await;
    let second = env.create_account(&olga).await;
    env.join(&second, &olga, "ann@example.com").await;
    switch(&env, &ann, &s, &second).await;
    let s = env.refresh(s.refresh_token).await;
    assert_eq!(s.access_token.as_ref().unwrap().account_id, second);
    // ...and falls back to "first" once she is not (suspended behind
    // identity's back, so the session itself is not ended).
    env.suspend_behind_accounts_back(&ann, &second).await;
    let s = env.refresh(s.refresh_token).await;
    assert_eq!(s.access_token.as_ref().unwrap().account_id, first);
    // The session now has "first" selected.
    let listed = env
        .in_session(&ann, &s.session_id, None)
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed[0].account_id, first);
}

#[tokio::test]
async fn login_goes_on_without_an_account_when_the_account_service_does_not_answer() {
    let env = Env::start("select_unavailable").await;
    let ann = env.verified_user("ann@example.com").await;
    let first = env.create_account(&ann).await;
    let s = env.login("ann@example.com").await;
    assert_eq!(s.access_token.as_ref().unwrap().account_id, first);
    let (replica, _silent) = env.replica_without_accounts().await;
    let mut anonymous = replica.as_principal(tenancy_runtime::Principal {
        client_ip: Some("198.51.100.7".parse().unwrap()),
        user_agent: "tests".into(),
        request_id: "r".into(),
        ..tenancy_runtime::Principal::default()
    });
    let login = |account_id: &str| LoginRequest {
        email: "ann@example.com".into(),
        password: PASSWORD.into(),
        account_id: account_id.into(),
        unlock_token: String::new(),
    };
    // No account named: the login succeeds, in bounded time, selecting none.
    let started = Instant::now();
    let Outcome::Session(without) = anonymous
        .login(login(""))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap()
    else {
        panic!("expected a session");
    };
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(without.access_token.unwrap().account_id, "");
    // An account named: it cannot be confirmed, so UNAVAILABLE.
    let e = anonymous.login(login(&first)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // A refresh keeps the session's account (the gateway checks it live).
    let kept = anonymous
        .refresh_session(RefreshSessionRequest {
            refresh_token: s.refresh_token,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(kept.access_token.unwrap().account_id, first);
}
