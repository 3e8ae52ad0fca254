//! TOTP enrolment, MFA challenges with replay prevention, recovery codes,
//! re-authentication, account switching and the caller's sessions.

use std::time::Duration;

use tenancy_proto::identity::complete_mfa_request::SecondFactor;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, PASSWORD, Public, reason};

/// The TOTP code of a base32 secret at a Unix time (independent RFC 6238).
pub(crate) fn code(secret_b32: &str, unix_seconds: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).unwrap();
    let t = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    t.generate(u64::try_from(unix_seconds).unwrap()).to_string()
}

pub(crate) fn now_s(env: &Env) -> i64 {
    use tenancy_runtime::Clock as _;
    env.clock.now().seconds()
}

/// A verified user with 2FA on; returns (user id, base32 secret, codes).
pub(crate) async fn enrolled(env: &Env, email: &str) -> (String, String, Vec<String>) {
    let user = env.verified_user(email).await;
    let s = env.login(email).await;
    let (secret, codes) = enroll(env, &user, &s).await;
    (user, secret, codes)
}

/// Turns 2FA on for `user` in session `s`; returns (base32 secret, codes).
pub(crate) async fn enroll(env: &Env, user: &str, s: &SessionCredentials) -> (String, Vec<String>) {
    let mut c = env.in_session(user, &s.session_id, None);
    let begun = c
        .begin_totp_enrollment(BeginTotpEnrollmentRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(begun.otpauth_uri.starts_with("otpauth://totp/"));
    assert!(begun.qr_code_png.starts_with(b"\x89PNG"));
    assert_eq!((begun.digits, begun.period_seconds), (6, 30));
    let confirmed = c
        .confirm_totp_enrollment(ConfirmTotpEnrollmentRequest {
            totp_code: code(&begun.secret, now_s(env)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.recovery_codes.len(), 10);
    // Move past the steps used so far.
    env.advance(Duration::from_secs(90));
    (begun.secret, confirmed.recovery_codes)
}

pub(crate) async fn challenge(env: &Env, email: &str) -> String {
    challenge_by(&mut env.anonymous("198.51.100.7"), email, "").await
}

/// The challenge token of a correct Login of a 2FA user by `client`.
pub(crate) async fn challenge_by(client: &mut Public, email: &str, account_id: &str) -> String {
    let r = client
        .login(LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
            account_id: account_id.into(),
            unlock_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    match r.outcome.unwrap() {
        Outcome::MfaChallenge(c) => c.challenge_token,
        Outcome::Session(_) => panic!("expected a challenge"),
    }
}

pub(crate) fn answer(token: &str, factor: SecondFactor) -> CompleteMfaRequest {
    CompleteMfaRequest {
        challenge_token: token.into(),
        second_factor: Some(factor),
    }
}

#[tokio::test]
async fn a_2fa_login_needs_a_totp_code_and_a_code_is_accepted_once() {
    let env = Env::start("mfa").await;
    let (user, secret, _) = enrolled(&env, "ann@example.com").await;
    let me = env
        .internal()
        .batch_get_users(BatchGetUsersRequest {
            user_ids: vec![user.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .users
        .remove(0);
    assert!(me.totp_enabled);
    assert_eq!(me.recovery_codes_remaining, 10);
    let mut c = env.anonymous("198.51.100.7");
    let t = challenge(&env, "ann@example.com").await;
    let current = code(&secret, now_s(&env));
    let s = c
        .complete_mfa(answer(&t, SecondFactor::TotpCode(current.clone())))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(s.user_id, user);
    // The challenge is single use; the code cannot be replayed.
    let e = c
        .complete_mfa(answer(&t, SecondFactor::TotpCode(current.clone())))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MfaChallengeInvalid);
    let t2 = challenge(&env, "ann@example.com").await;
    let e = c
        .complete_mfa(answer(&t2, SecondFactor::TotpCode(current)))
        .await
        .unwrap_err();
    // The same code and reason as everywhere else a code is checked.
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&e), Reason::TotpCodeReused);
    assert_eq!(tenancy_runtime::error::violated_fields(&e), ["totp_code"]);
    let e = c
        .complete_mfa(CompleteMfaRequest {
            challenge_token: t2,
            second_factor: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SecondFactorRequired);
}

#[tokio::test]
async fn two_concurrent_submissions_of_one_code_succeed_exactly_once() {
    let env = Env::start("mfarace").await;
    let (_, secret, _) = enrolled(&env, "ben@example.com").await;
    let current = code(&secret, now_s(&env));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let t = challenge(&env, "ben@example.com").await;
        let mut c = env.anonymous("198.51.100.7");
        let code = current.clone();
        handles.push(tokio::spawn(async move {
            c.complete_mfa(answer(&t, SecondFactor::TotpCode(code)))
                .await
        }));
    }
    let mut wins = 0;
    let mut reused = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) if reason(&e) == Reason::TotpCodeReused => reused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((wins, reused), (1, 1));
}

/// RFC 6238 §5.2: once the code of step s was accepted, the unused code of
/// step s−1 (still within the skew) is refused, at login and in
/// Reauthenticate alike; the next step's code works.
#[tokio::test]
async fn codes_at_or_before_the_last_accepted_step_are_refused() {
    let env = Env::start("mfasteps").await;
    let (user, secret, _) = enrolled(&env, "gus@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    let t = challenge(&env, "gus@example.com").await;
    let s = c
        .complete_mfa(answer(
            &t,
            SecondFactor::TotpCode(code(&secret, now_s(&env))),
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let earlier = code(&secret, now_s(&env) - 30);
    let t2 = challenge(&env, "gus@example.com").await;
    let e = c
        .complete_mfa(answer(&t2, SecondFactor::TotpCode(earlier.clone())))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TotpCodeReused);
    let mut me = env.in_session(&user, &s.session_id, None);
    let reauth = |totp: String| ReauthenticateRequest {
        password: PASSWORD.into(),
        second_factor: Some(reauthenticate_request::SecondFactor::TotpCode(totp)),
    };
    let e = me.reauthenticate(reauth(earlier)).await.unwrap_err();
    assert_eq!(reason(&e), Reason::TotpCodeReused);
    me.reauthenticate(reauth(code(&secret, now_s(&env) + 30)))
        .await
        .unwrap();
    // Now the current step is behind the last accepted one too.
    let e = me
        .reauthenticate(reauth(code(&secret, now_s(&env))))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TotpCodeReused);
}

#[tokio::test]
async fn codes_are_accepted_with_one_step_of_skew_only() {
    let env = Env::start("mfaskew").await;
    let (_, secret, _) = enrolled(&env, "cat@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    let t = challenge(&env, "cat@example.com").await;
    let stale = code(&secret, now_s(&env) - 90);
    if stale != code(&secret, now_s(&env) - 30)
        && stale != code(&secret, now_s(&env))
        && stale != code(&secret, now_s(&env) + 30)
    {
        let e = c
            .complete_mfa(answer(&t, SecondFactor::TotpCode(stale)))
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::SecondFactorInvalid);
    }
    c.complete_mfa(answer(
        &t,
        SecondFactor::TotpCode(code(&secret, now_s(&env) - 30)),
    ))
    .await
    .unwrap();
}

/// Recovery codes are stored keyed: the database holds no plain SHA-256 of
/// a code (which an offline search of its 50 bits would reverse). Codes an
/// earlier version stored unkeyed are re-keyed when a server starts, and
/// keep working.
#[tokio::test]
async fn recovery_codes_are_stored_keyed_and_old_ones_rekeyed_at_start() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let env = Env::start("mfarekey").await;
    let (user, _, codes) = enrolled(&env, "hal@example.com").await;
    let db = Database::connect(&env.db.url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = |q: String| Statement::from_string(backend, q);
    let stored = || async {
        db.query_all_raw(sql(format!(
            "SELECT code_hash FROM identity_recovery_codes WHERE user_id = '{user}'"
        )))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "code_hash").unwrap())
        .collect::<Vec<_>>()
    };
    let unkeyed = |code: &str| {
        tenancy_runtime::secret::sha256_hex(format!("{user}:{}", code.replace('-', "")).as_bytes())
    };
    let now = stored().await;
    assert_eq!(now.len(), 10);
    for code in &codes {
        assert!(!now.contains(&unkeyed(code)), "stored unkeyed");
    }
    // As an earlier version stored them.
    db.execute_raw(sql(format!(
        "DELETE FROM identity_recovery_codes WHERE user_id = '{user}'"
    )))
    .await
    .unwrap();
    db.execute_raw(sql(format!(
        "INSERT INTO identity_recovery_codes (code_hash, user_id) VALUES ('{}', '{user}')",
        unkeyed(&codes[0])
    )))
    .await
    .unwrap();
    // A server starting on the database re-keys them.
    let _replica = env.replica().await;
    let now = stored().await;
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], unkeyed(&codes[0]));
    let t = challenge(&env, "hal@example.com").await;
    env.anonymous("198.51.100.7")
        .complete_mfa(answer(&t, SecondFactor::RecoveryCode(codes[0].clone())))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_challenge_allows_five_wrong_codes_and_expires_after_five_minutes() {
    let env = Env::start("mfalimit").await;
    let (_, secret, _) = enrolled(&env, "dan@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    let t = challenge(&env, "dan@example.com").await;
    let right = code(&secret, now_s(&env));
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let e = c
            .complete_mfa(answer(&t, SecondFactor::TotpCode(wrong.into())))
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::SecondFactorInvalid);
    }
    let e = c
        .complete_mfa(answer(&t, SecondFactor::TotpCode(right)))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MfaChallengeInvalid);
    let t = challenge(&env, "dan@example.com").await;
    env.advance(Duration::from_secs(301));
    let e = c
        .complete_mfa(answer(
            &t,
            SecondFactor::TotpCode(code(&secret, now_s(&env))),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MfaChallengeInvalid);
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let env = Env::start("recovery").await;
    let (_, _, codes) = enrolled(&env, "eve@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    let t = challenge(&env, "eve@example.com").await;
    c.complete_mfa(answer(
        &t,
        SecondFactor::RecoveryCode(codes[0].to_uppercase()),
    ))
    .await
    .unwrap();
    let t = challenge(&env, "eve@example.com").await;
    let e = c
        .complete_mfa(answer(&t, SecondFactor::RecoveryCode(codes[0].clone())))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SecondFactorInvalid);
}

#[tokio::test]
async fn reauthenticate_needs_the_password_and_for_2fa_users_a_code() {
    let env = Env::start("reauth").await;
    let (user, secret, _) = enrolled(&env, "fred@example.com").await;
    let t = challenge(&env, "fred@example.com").await;
    let s = env
        .anonymous("198.51.100.7")
        .complete_mfa(answer(
            &t,
            SecondFactor::TotpCode(code(&secret, now_s(&env))),
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    env.advance(Duration::from_secs(3600));
    let mut c = env.in_session(&user, &s.session_id, None);
    let e = c
        .reauthenticate(ReauthenticateRequest {
            password: "wrong password here".into(),
            second_factor: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PasswordIncorrect);
    let e = c
        .reauthenticate(ReauthenticateRequest {
            password: PASSWORD.into(),
            second_factor: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SecondFactorRequired);
    let token = c
        .reauthenticate(ReauthenticateRequest {
            password: PASSWORD.into(),
            second_factor: Some(reauthenticate_request::SecondFactor::TotpCode(code(
                &secret,
                now_s(&env),
            ))),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
        .unwrap();
    assert_eq!(token.auth_time.unwrap().seconds, now_s(&env));
}

#[tokio::test]
async fn switch_account_needs_an_active_membership() {
    let env = Env::start("switch").await;
    let user = env.verified_user("gil@example.com").await;
    let s = env.login("gil@example.com").await;
    // An account gil does not belong to (someone else's), then his own.
    let stranger = env.verified_user("gus@example.com").await;
    let theirs = env.create_account(&stranger).await;
    let mut c = env.in_session(&user, &s.session_id, None);
    let e = c
        .switch_account(SwitchAccountRequest {
            account_id: theirs.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason(&e), Reason::NotAMember);
    let e = c
        .switch_account(SwitchAccountRequest {
            account_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::AccountIdInvalid);
    let account = env.create_account(&user).await;
    let token = c
        .switch_account(SwitchAccountRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
        .unwrap();
    assert_eq!(token.account_id, account);
    // Refresh stays in the account while the membership is active...
    let mut anon = env.anonymous("198.51.100.7");
    let next = env.refresh(s.refresh_token).await;
    assert_eq!(next.access_token.unwrap().account_id, account);
    // ...and selects none once it is not.
    env.suspend_behind_accounts_back(&user, &account).await;
    let after = env.refresh(next.refresh_token).await;
    assert_eq!(after.access_token.unwrap().account_id, "");
    // Login naming an account refuses a non-member after the password.
    let e = anon
        .login(LoginRequest {
            email: "gil@example.com".into(),
            password: PASSWORD.into(),
            account_id: account,
            unlock_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::NotAMember);
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_individually_or_all_but_current() {
    let env = Env::start("ownsessions").await;
    let user = env.verified_user("hank@example.com").await;
    let a = env.login("hank@example.com").await;
    let b = env.login("hank@example.com").await;
    let d = env.login("hank@example.com").await;
    let mut c = env.in_session(&user, &a.session_id, None);
    let listed = c
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed.iter().filter(|s| s.current).count(), 1);
    c.revoke_session(RevokeSessionRequest {
        session_id: b.session_id.clone(),
    })
    .await
    .unwrap();
    let e = c
        .revoke_session(RevokeSessionRequest {
            session_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SessionNotFound);
    let n = c
        .revoke_other_sessions(RevokeOtherSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .revoked_session_count;
    assert_eq!(n, 1);
    let listed = c
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, a.session_id);
    let _ = d;
}

#[tokio::test]
async fn owners_see_and_end_a_members_sessions_in_their_account_only() {
    let env = Env::start("membersessions").await;
    let owner = env.verified_user("olga@example.com").await;
    let member = env.verified_user("mia@example.com").await;
    // Mia owns `other` and joins olga's `account`.
    let account = env.create_account(&owner).await;
    let other = env.create_account(&member).await;
    env.join(&account, &owner, "mia@example.com").await;
    let s1 = env.login("mia@example.com").await;
    let s2 = env.login("mia@example.com").await;
    env.in_session(&member, &s1.session_id, None)
        .switch_account(SwitchAccountRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap();
    env.in_session(&member, &s2.session_id, None)
        .switch_account(SwitchAccountRequest {
            account_id: other.clone(),
        })
        .await
        .unwrap();
    let so = env.login("olga@example.com").await;
    let mut principal = tenancy_testkit::member(&owner, &account, tenancy_testkit::Role::Owner);
    principal.session_id = Some(so.session_id);
    let mut c = env.as_principal(principal);
    let listed = c
        .list_member_sessions(ListMemberSessionsRequest {
            user_id: member.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, s1.session_id);
    let r = c
        .revoke_member_sessions(RevokeMemberSessionsRequest {
            user_id: member.clone(),
            revoke_api_tokens: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.revoked_session_count, 1);
    let mut anon = env.anonymous("198.51.100.7");
    let e = anon
        .refresh_session(RefreshSessionRequest {
            refresh_token: s1.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RefreshTokenInvalid);
    // The session in the other account is untouched.
    anon.refresh_session(RefreshSessionRequest {
        refresh_token: s2.refresh_token,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn disabling_2fa_needs_a_proof_and_regenerated_codes_replace_the_old_ones() {
    let env = Env::start("disabletotp").await;
    let (user, secret, old_codes) = enrolled(&env, "jim@example.com").await;
    let t = challenge(&env, "jim@example.com").await;
    let s = env
        .anonymous("198.51.100.7")
        .complete_mfa(answer(
            &t,
            SecondFactor::TotpCode(code(&secret, now_s(&env))),
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let mut c = env.in_session(&user, &s.session_id, None);
    let e = c
        .regenerate_recovery_codes(RegenerateRecoveryCodesRequest { proof: None })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ProofRequired);
    let new_codes = c
        .regenerate_recovery_codes(RegenerateRecoveryCodesRequest {
            proof: Some(regenerate_recovery_codes_request::Proof::Password(
                PASSWORD.into(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    assert_eq!(new_codes.len(), 10);
    let t = challenge(&env, "jim@example.com").await;
    let e = env
        .anonymous("198.51.100.7")
        .complete_mfa(answer(&t, SecondFactor::RecoveryCode(old_codes[0].clone())))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SecondFactorInvalid);
    let e = c
        .disable_totp(DisableTotpRequest {
            proof: Some(disable_totp_request::Proof::Password(
                "wrong password here".into(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PasswordIncorrect);
    let disabled = tenancy_proto::contacts::MessageTemplate::SecurityTotpDisabled;
    assert!(
        !env.outbox
            .templates_to("jim@example.com")
            .await
            .contains(&disabled)
    );
    c.disable_totp(DisableTotpRequest {
        proof: Some(disable_totp_request::Proof::Password(PASSWORD.into())),
    })
    .await
    .unwrap();
    // The user is told by email.
    assert_eq!(
        env.outbox.templates_to("jim@example.com").await.last(),
        Some(&disabled)
    );
    let e = c
        .disable_totp(DisableTotpRequest {
            proof: Some(disable_totp_request::Proof::Password(PASSWORD.into())),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TotpNotEnabled);
    // Logins no longer ask for a second factor.
    env.login("jim@example.com").await;
}

#[tokio::test]
async fn enrolment_codes_are_attempt_limited() {
    let env = Env::start("enrolthrottle").await;
    let user = env.verified_user("kim@example.com").await;
    let s = env.login("kim@example.com").await;
    let mut c = env.in_session(&user, &s.session_id, None);
    let secret = c
        .begin_totp_enrollment(BeginTotpEnrollmentRequest {})
        .await
        .unwrap()
        .into_inner()
        .secret;
    // A code no step around now accepts.
    let accepted: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| code(&secret, now_s(&env) + d))
        .collect();
    let wrong = (0..)
        .map(|n: u32| format!("{n:06}"))
        .find(|w| !accepted.contains(w))
        .unwrap();
    let confirm = |totp_code: String| {
        let mut c = c.clone();
        async move {
            c.confirm_totp_enrollment(ConfirmTotpEnrollmentRequest { totp_code })
                .await
        }
    };
    for _ in 0..5 {
        let e = confirm(wrong.clone()).await.unwrap_err();
        assert_eq!(reason(&e), Reason::SecondFactorInvalid);
    }
    // Now even the right code waits for the back-off.
    let e = confirm(code(&secret, now_s(&env))).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e)),
        (tonic::Code::ResourceExhausted, Reason::AttemptsExceeded)
    );
    env.advance(Duration::from_secs(2));
    confirm(code(&secret, now_s(&env))).await.unwrap();
}

/// A code no step around now accepts for `secret`.
fn wrong_code(env: &Env, secret: &str) -> String {
    let accepted: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| code(secret, now_s(env) + d))
        .collect();
    (0..)
        .map(|n: u32| format!("{n:06}"))
        .find(|w| !accepted.contains(w))
        .unwrap()
}

/// Concurrent wrong codes at one challenge: each is counted before it is
/// checked, so at most five are checked (SECOND_FACTOR_INVALID); the
/// others are refused unchecked, and the challenge is spent for the right
/// code too.
#[tokio::test]
async fn concurrent_wrong_codes_at_one_challenge_are_checked_at_most_five_times() {
    let env = Env::start("mfaconc").await;
    let (_, secret, _) = enrolled(&env, "eve@example.com").await;
    let t = challenge(&env, "eve@example.com").await;
    let wrong = wrong_code(&env, &secret);
    let attempts = (0..20).map(|_| {
        let mut c = env.anonymous("198.51.100.7");
        let request = answer(&t, SecondFactor::TotpCode(wrong.clone()));
        tokio::spawn(async move { c.complete_mfa(request).await })
    });
    let mut checked = 0;
    for result in futures::future::join_all(attempts).await {
        let e = result.unwrap().unwrap_err();
        match reason(&e) {
            Reason::SecondFactorInvalid => checked += 1,
            Reason::MfaChallengeInvalid => {}
            other => panic!("unexpected {other:?}: {e:?}"),
        }
    }
    assert_eq!(checked, 5, "wrong codes checked");
    let e = env
        .anonymous("198.51.100.7")
        .complete_mfa(answer(
            &t,
            SecondFactor::TotpCode(code(&secret, now_s(&env))),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MfaChallengeInvalid);
}

/// Concurrent wrong enrolment codes: at most five are checked before the
/// back-off, the others are refused with TOO_MANY_ATTEMPTS unchecked.
#[tokio::test]
async fn concurrent_wrong_enrolment_codes_are_checked_at_most_five_times() {
    let env = Env::start("enrolconc").await;
    let user = env.verified_user("liv@example.com").await;
    let s = env.login("liv@example.com").await;
    let c = env.in_session(&user, &s.session_id, None);
    let secret = c
        .clone()
        .begin_totp_enrollment(BeginTotpEnrollmentRequest {})
        .await
        .unwrap()
        .into_inner()
        .secret;
    let wrong = wrong_code(&env, &secret);
    let attempts = (0..20).map(|_| {
        let mut c = c.clone();
        let totp_code = wrong.clone();
        tokio::spawn(async move {
            c.confirm_totp_enrollment(ConfirmTotpEnrollmentRequest { totp_code })
                .await
        })
    });
    let mut checked = 0;
    for result in futures::future::join_all(attempts).await {
        let e = result.unwrap().unwrap_err();
        match (e.code(), reason(&e)) {
            (_, Reason::SecondFactorInvalid) => checked += 1,
            (tonic::Code::ResourceExhausted, Reason::AttemptsExceeded) => {}
            other => panic!("unexpected {other:?}: {e:?}"),
        }
    }
    assert_eq!(checked, 5, "wrong codes checked");
    // After the back-off the right code works.
    env.advance(Duration::from_secs(2));
    c.clone()
        .confirm_totp_enrollment(ConfirmTotpEnrollmentRequest {
            totp_code: code(&secret, now_s(&env)),
        })
        .await
        .unwrap();
}
