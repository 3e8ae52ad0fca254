//! What the gateway decides from the state identity and account push, over
//! real gRPC through the whole suite (issue 14): revocations end exactly
//! what existed before them; refusals say what happened and name the
//! account; enforced 2FA covers API tokens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_proto::account::{
    GetAccountRequest, ListServicesRequest, ReactivateMemberRequest, RevokeMemberRequest,
    SecuritySettings, SuspendMemberRequest, UpdateSecuritySettingsRequest,
};
use tenancy_proto::auth::Role;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{
    BeginTotpEnrollmentRequest, ConfirmTotpEnrollmentRequest, CreateApiTokenRequest,
    DisableTotpRequest, GetMeRequest, ListApiTokensRequest, RequestPasswordResetRequest,
    ResetPasswordRequest, RevokeApiTokenRequest, RevokeMemberSessionsRequest,
    RevokeOtherSessionsRequest, SwitchAccountRequest, disable_totp_request,
};
use tenancy_runtime::{Clock as _, ManualClock, Reason, SystemClock, Timestamp};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::gateway::{PASSWORD, Suite, reason, refused_within, user_of};

/// A clock frozen in the middle of a second: every call of a test happens
/// in the same second (and millisecond), which is where revocations by a
/// cut-off in seconds ended tokens born after them.
fn frozen_mid_second() -> ManualClock {
    let now = SystemClock.now().millis();
    ManualClock::new(Timestamp(now - now.rem_euclid(1000) + 500))
}

/// ErrorInfo metadata of a refusal.
fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

/// Logs in through the gateway; returns the access token.
async fn login(suite: &Suite, email: &str, password: &str, account_id: &str) -> String {
    suite
        .session(email, password, account_id)
        .await
        .access_token
        .unwrap()
        .token
}

/// Waits until the gateway refuses `token` as revoked: the revocation has
/// reached it.
async fn wait_revoked(suite: &Suite, token: &str) {
    let (took, status) = refused_within(Duration::from_secs(2), Code::Unauthenticated, || {
        let mut client = suite.identity(token);
        async move { client.get_me(GetMeRequest::default()).await }
    })
    .await;
    assert_eq!(reason(&status), Reason::TokenRevoked, "after {took:?}");
}

/// Once the gateway has applied a revocation (it refuses `before`), the
/// token created after it (`after`) is still accepted: it was not born dead.
async fn revoked_before_but_not_after(suite: &Suite, before: &str, after: &str) {
    wait_revoked(suite, before).await;
    suite
        .identity(after)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
}

async fn api_token(suite: &Suite, portal_token: &str) -> String {
    api_token_expiring(suite, portal_token, None).await
}

async fn api_token_expiring(
    suite: &Suite,
    portal_token: &str,
    expire_time: Option<prost_types::Timestamp>,
) -> String {
    suite
        .identity(portal_token)
        .create_api_token(CreateApiTokenRequest {
            name: "automation".into(),
            expire_time,
            read_only: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// A call an API token may make.
async fn with_api_token(suite: &Suite, token: &str) -> Result<(), tonic::Status> {
    suite
        .account(token)
        .list_services(ListServicesRequest::default())
        .await
        .map(drop)
}

#[tokio::test]
async fn a_login_right_after_a_password_reset_is_not_born_dead() {
    let clock = frozen_mid_second();
    let suite = Suite::start_with_clock(Arc::new(clock), |_| {}).await;
    let email = "reset@example.com";
    let before = suite.user(email).await;
    let mut anonymous = IdentityServiceClient::new(suite.gateway.clone());
    anonymous
        .request_password_reset(RequestPasswordResetRequest {
            email: email.into(),
        })
        .await
        .unwrap();
    let token = suite.emailed_token(email, "reset_url").await;
    let new_password = "an entirely new passphrase";
    anonymous
        .reset_password(ResetPasswordRequest {
            token,
            new_password: new_password.into(),
        })
        .await
        .unwrap();
    // Back to back, in the same millisecond as the reset.
    let after = login(&suite, email, new_password, "").await;
    revoked_before_but_not_after(&suite, &before, &after).await;
}

#[tokio::test]
async fn a_member_logged_out_by_an_owner_may_log_in_again_at_once() {
    let clock = frozen_mid_second();
    let suite = Suite::start_with_clock(Arc::new(clock), |_| {}).await;
    let owner = suite.user("owner-rms@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let member = suite
        .member(&owner, &account_id, "member-rms@example.com", Role::Manager)
        .await;
    suite
        .identity(&owner)
        .revoke_member_sessions(RevokeMemberSessionsRequest {
            user_id: user_of(&member),
            revoke_api_tokens: false,
        })
        .await
        .unwrap();
    // "The member stays a member and may log in again": back to back.
    let again = login(&suite, "member-rms@example.com", PASSWORD, &account_id).await;
    revoked_before_but_not_after(&suite, &member, &again).await;
    suite
        .account(&again)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_login_right_after_revoking_other_sessions_is_not_born_dead() {
    let clock = frozen_mid_second();
    let suite = Suite::start_with_clock(Arc::new(clock), |_| {}).await;
    let email = "others@example.com";
    let here = suite.user(email).await;
    let elsewhere = suite.login(email).await;
    suite
        .identity(&here)
        .revoke_other_sessions(RevokeOtherSessionsRequest {})
        .await
        .unwrap();
    let new_login = suite.login(email).await;
    revoked_before_but_not_after(&suite, &elsewhere, &new_login).await;
    suite
        .identity(&here)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_suspended_member_is_told_so_for_that_account_and_keeps_their_session() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("acme-owner@example.com").await;
    let (acme, owner) = suite.account_of(&owner).await;
    let email = "contractor@example.com";
    let in_acme = suite.member(&owner, &acme, email, Role::Manager).await;
    let member = user_of(&in_acme);
    // The member's own account, for switching to.
    let plain = suite.login(email).await;
    let (own, _) = suite.account_of(&plain).await;
    let api = api_token(&suite, &in_acme).await;
    with_api_token(&suite, &api).await.unwrap();

    suite
        .account(&owner)
        .suspend_member(SuspendMemberRequest {
            user_id: member.clone(),
        })
        .await
        .unwrap();
    // The first refusal already says what happened, naming the account.
    let status = suite.account_refusal(&in_acme).await;
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::PermissionDenied, Reason::MemberSuspended),
        "{status:?}"
    );
    assert_eq!(
        metadata(&status, "account_id").as_deref(),
        Some(acme.as_str())
    );
    assert!(status.message().contains(&acme), "{}", status.message());
    // Their API tokens for the account are refused from now on (the
    // gateway knows the suspension), and revoked for good within a second
    // (the revocation reaches it on its own stream).
    let started = std::time::Instant::now();
    loop {
        let status = with_api_token(&suite, &api).await.unwrap_err();
        match (status.code(), reason(&status)) {
            (Code::Unauthenticated, Reason::TokenRevoked) => break,
            (Code::PermissionDenied, Reason::MemberSuspended) => {}
            other => panic!("{other:?}: {status:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not revoked within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The session lives on: USER methods, and switching to another account.
    suite
        .identity(&in_acme)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    let in_own = suite
        .identity(&in_acme)
        .switch_account(SwitchAccountRequest {
            account_id: own.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
        .unwrap()
        .token;
    suite
        .account(&in_own)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap();

    // Reactivated: the session is back in the account; the API token is not.
    suite
        .account(&owner)
        .reactivate_member(ReactivateMemberRequest {
            user_id: member.clone(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Err(status) = suite
        .account(&in_acme)
        .get_account(GetAccountRequest::default())
        .await
    {
        assert!(
            Instant::now() < deadline,
            "not back after reactivation: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = with_api_token(&suite, &api).await.unwrap_err();
    assert_eq!(reason(&status), Reason::TokenRevoked);

    // Revoked: not a member any more, named; the session lives on.
    suite
        .account(&owner)
        .revoke_member(RevokeMemberRequest { user_id: member })
        .await
        .unwrap();
    let status = suite.account_refusal(&in_acme).await;
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::PermissionDenied, Reason::NotAMember),
        "{status:?}"
    );
    assert_eq!(
        metadata(&status, "account_id").as_deref(),
        Some(acme.as_str())
    );
    suite
        .identity(&in_acme)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    suite
        .account(&in_own)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_api_token_gets_the_same_refusal_whether_or_not_the_gateway_knew_it() {
    let clock = ManualClock::starting_now();
    let suite = Suite::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let owner = suite.user("tokens@example.com").await;
    let (_, owner) = suite.account_of(&owner).await;
    let revoke = |secret: String| {
        let suite = &suite;
        let owner = owner.clone();
        async move {
            let id = suite
                .identity(&owner)
                .list_api_tokens(ListApiTokensRequest::default())
                .await
                .unwrap()
                .into_inner()
                .api_tokens
                .into_iter()
                .find(|t| secret.ends_with(&t.last_four))
                .unwrap()
                .id;
            suite
                .identity(&owner)
                .revoke_api_token(RevokeApiTokenRequest { api_token_id: id })
                .await
                .unwrap();
        }
    };

    // Revoked: one used before (cached by the gateway), one never used.
    let used = api_token(&suite, &owner).await;
    with_api_token(&suite, &used).await.unwrap();
    let unused = api_token(&suite, &owner).await;
    revoke(used.clone()).await;
    revoke(unused.clone()).await;
    let (_, cached) = refused_within(Duration::from_secs(1), None, || {
        with_api_token(&suite, &used)
    })
    .await;
    let uncached = with_api_token(&suite, &unused).await.unwrap_err();
    for status in [&cached, &uncached] {
        assert_eq!(
            (status.code(), reason(status)),
            (Code::Unauthenticated, Reason::TokenRevoked),
            "{status:?}"
        );
    }
    // Even on a method API tokens may not call at all.
    let status = suite
        .identity(&used)
        .create_api_token(CreateApiTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::TokenRevoked);

    // Expired: the same, cached or not.
    let soon = clock.now().plus(Duration::from_secs(60)).to_proto();
    let used = api_token_expiring(&suite, &owner, Some(soon)).await;
    let unused = api_token_expiring(&suite, &owner, Some(soon)).await;
    with_api_token(&suite, &used).await.unwrap();
    clock.advance(Duration::from_secs(60));
    let cached = with_api_token(&suite, &used).await.unwrap_err();
    let uncached = with_api_token(&suite, &unused).await.unwrap_err();
    for status in [&cached, &uncached] {
        assert_eq!(
            (status.code(), reason(status)),
            (Code::Unauthenticated, Reason::TokenExpired),
            "{status:?}"
        );
    }

    // Never issued (well formed, checksum right): invalid, the same every
    // time.
    let unknown = tenancy_runtime::api_token::generate();
    for _ in 0..2 {
        let status = with_api_token(&suite, &unknown).await.unwrap_err();
        assert_eq!(
            (status.code(), reason(&status)),
            (Code::Unauthenticated, Reason::TokenInvalid)
        );
    }
}

/// The current TOTP code of `secret` (base32) at `clock`'s time.
fn totp_code(secret: &str, clock: &ManualClock) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    totp.generate(u64::try_from(clock.now().seconds()).unwrap())
        .to_string()
}

#[tokio::test]
async fn enforced_2fa_refuses_api_tokens_of_members_without_it_after_their_deadline() {
    let clock = ManualClock::starting_now();
    let suite = Suite::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let owner = suite.user("strict-owner@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let email = "automation@example.com";
    let member = suite
        .member(&owner, &account_id, email, Role::Manager)
        .await;
    let api = api_token(&suite, &member).await;
    with_api_token(&suite, &api).await.unwrap();

    suite
        .account(&owner)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings {
                enforce_mfa: true,
                mfa_grace_period: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enforce_mfa".into(), "mfa_grace_period".into()],
            }),
            force: false,
        })
        .await
        .unwrap();
    let enforced = clock.now();

    // After the member's deadline, their API token is refused, saying why.
    clock.advance(Duration::from_secs(3601));
    let (took, status) = refused_within(Duration::from_secs(2), None, || {
        with_api_token(&suite, &api)
    })
    .await;
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::PermissionDenied, Reason::MfaEnrollmentRequired),
        "{status:?} after {took:?}"
    );
    assert_eq!(
        metadata(&status, "account_id").as_deref(),
        Some(account_id.as_str())
    );
    let deadline: prost_types::Timestamp = metadata(&status, "mfa_deadline")
        .expect("the deadline")
        .parse()
        .unwrap();
    let deadline = Timestamp::from_proto(&deadline);
    assert!(
        deadline >= enforced.plus(Duration::from_secs(3600))
            && deadline <= enforced.plus(Duration::from_secs(3601)),
        "{deadline:?} for enforcement at {enforced:?}"
    );

    // Before the deadline it was accepted.
    clock.set(deadline.minus(Duration::from_secs(1)));
    with_api_token(&suite, &api).await.unwrap();
    clock.set(deadline);
    let status = with_api_token(&suite, &api).await.unwrap_err();
    assert_eq!(reason(&status), Reason::MfaEnrollmentRequired);

    // The member enrols (in a fresh portal session: enrolment needs a
    // recent login): the token the gateway has cached is accepted at once.
    let session = login(&suite, email, PASSWORD, &account_id).await;
    let begun = suite
        .identity(&session)
        .begin_totp_enrollment(BeginTotpEnrollmentRequest {})
        .await
        .unwrap()
        .into_inner();
    let with_otp = suite
        .identity(&session)
        .confirm_totp_enrollment(ConfirmTotpEnrollmentRequest {
            totp_code: totp_code(&begun.secret, &clock),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
        .unwrap()
        .token;
    let started = Instant::now();
    while let Err(status) = with_api_token(&suite, &api).await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still refused after enrolling: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Turning 2FA off applies at once too.
    suite
        .identity(&with_otp)
        .disable_totp(DisableTotpRequest {
            proof: Some(disable_totp_request::Proof::Password(PASSWORD.into())),
        })
        .await
        .unwrap();
    let (_, status) = refused_within(Duration::from_secs(1), None, || {
        with_api_token(&suite, &api)
    })
    .await;
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::PermissionDenied, Reason::MfaEnrollmentRequired)
    );
}
