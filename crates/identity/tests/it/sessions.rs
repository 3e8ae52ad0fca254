//! Login, access tokens (JWT/JWKS), refresh rotation, logout, throttling,
//! and the revocation log.

use std::time::Duration;

use futures::StreamExt as _;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::watch_revocations_response::Item;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, PASSWORD, reason};

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest {
        email: email.into(),
        password: password.into(),
        account_id: String::new(),
        unlock_token: String::new(),
    }
}

async fn session(env: &Env, email: &str) -> SessionCredentials {
    let r = env
        .anonymous("198.51.100.7")
        .login(login(email, PASSWORD))
        .await
        .unwrap()
        .into_inner();
    match r.outcome.unwrap() {
        Outcome::Session(s) => s,
        Outcome::MfaChallenge(_) => panic!("unexpected challenge"),
    }
}

fn decode(env_jwks: &[Jwk], token: &str) -> serde_json::Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.unwrap();
    let jwk = env_jwks.iter().find(|k| k.kid == kid).unwrap();
    let key = jsonwebtoken::DecodingKey::from_ed_components(&jwk.x).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["tenancy-portal"]);
    validation.set_issuer(&["tenancy"]);
    validation.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims
}

async fn jwks(env: &Env) -> Vec<Jwk> {
    env.anonymous("198.51.100.7")
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
}

#[tokio::test]
async fn login_issues_an_eddsa_access_token_verifiable_with_the_jwks() {
    let env = Env::start("login").await;
    let user = env.verified_user("alice@example.com").await;
    let s = session(&env, "ALICE@example.com").await;
    assert_eq!(s.user_id, user);
    assert!(s.refresh_token.starts_with("tnr_"));
    let access = s.access_token.unwrap();
    let claims = decode(&jwks(&env).await, &access.token);
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["sid"], s.session_id.as_str());
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["kind"], "portal");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 600);
    let keys = jwks(&env).await;
    assert_eq!(keys[0].kty, "OKP");
    assert_eq!(keys[0].crv, "Ed25519");
    assert_eq!(keys[0].alg, "EdDSA");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_are_refused_alike() {
    let env = Env::start("badlogin").await;
    env.verified_user("bob@example.com").await;
    let mut c = env.anonymous("198.51.100.8");
    let a = c
        .login(login("bob@example.com", "wrong password here"))
        .await
        .unwrap_err();
    let b = c
        .login(login("nobody@example.com", PASSWORD))
        .await
        .unwrap_err();
    let d = c
        .login(login("bob@example.com", &"x".repeat(2000)))
        .await
        .unwrap_err();
    for e in [&a, &b, &d] {
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert_eq!(reason(e), Reason::CredentialsInvalid);
        assert_eq!(e.message(), a.message());
    }
}

#[tokio::test]
async fn unverified_users_cannot_log_in_but_learn_it_only_with_the_right_password() {
    let env = Env::start("unverified").await;
    let mut c = env.anonymous("198.51.100.9");
    c.sign_up(SignUpRequest {
        email: "carol@example.com".into(),
        password: PASSWORD.into(),
        name: "Carol".into(),
        phone: String::new(),
    })
    .await
    .unwrap();
    let e = c
        .login(login("carol@example.com", "wrong password here"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::CredentialsInvalid);
    let e = c
        .login(login("carol@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&e), Reason::EmailNotVerified);
    // Resent at most once per 10 minutes.
    assert_eq!(env.outbox.count_to("carol@example.com").await, 1);
    env.advance(Duration::from_secs(601));
    c.login(login("carol@example.com", PASSWORD))
        .await
        .unwrap_err();
    // (Resent in the background.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.outbox.count_to("carol@example.com").await < 2 && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.outbox.count_to("carol@example.com").await, 2);
}

#[tokio::test]
async fn failures_back_off_per_email_and_address_without_locking_out_other_addresses() {
    let env = Env::start("throttle").await;
    env.verified_user("dave@example.com").await;
    let mut attacker = env.anonymous("203.0.113.66");
    for _ in 0..5 {
        let e = attacker
            .login(login("dave@example.com", "wrong password here"))
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::CredentialsInvalid);
    }
    // Sixth attempt is refused before checking, even with the right password.
    let e = attacker
        .login(login("dave@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&e), Reason::AttemptsExceeded);
    // The real user from elsewhere is not locked out.
    session(&env, "dave@example.com").await;
    // After the back-off the attacker's address may try again; a success resets.
    env.advance(Duration::from_secs(2));
    let r = attacker
        .login(login("dave@example.com", PASSWORD))
        .await
        .unwrap();
    assert!(matches!(r.into_inner().outcome, Some(Outcome::Session(_))));
    let e = attacker
        .login(login("dave@example.com", "wrong password here"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::CredentialsInvalid);
}

/// 105 wrong passwords from 21 addresses (5 each, under the back-off per
/// address) reach the per-email cap. The real user still gets in: from a
/// network they logged in from before at once, from a new one with the
/// one-time unlock link the refusal emailed them (at most 5 such emails an
/// hour). Strangers from new addresses stay capped.
#[tokio::test]
async fn an_attack_from_many_addresses_does_not_lock_out_the_user() {
    let env = Env::start("lockout").await;
    env.verified_user("frank@example.com").await;
    let home = "198.51.100.20";
    env.login_from(home, "frank@example.com").await;
    for a in 0..21 {
        let mut attacker = env.anonymous(&format!("203.0.113.{}", a + 1));
        for i in 0..5 {
            let e = attacker
                .login(login("frank@example.com", "wrong password here"))
                .await
                .unwrap_err();
            // The cap: 100 failures per email an hour.
            let expected = if a * 5 + i < 100 {
                Reason::CredentialsInvalid
            } else {
                Reason::AttemptsExceeded
            };
            assert_eq!(reason(&e), expected);
        }
    }
    // The user's own network: the right password works.
    env.login_from(home, "frank@example.com").await;
    // A new address: refused before any check, even with the right password,
    // and the user is sent an unlock link.
    let mut travelling = env.anonymous("192.0.2.50");
    let e = travelling
        .login(login("frank@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&e), Reason::AttemptsExceeded);
    let token = env
        .outbox
        .wait_token("frank@example.com", "action_url", None)
        .await;
    assert!(token.starts_with("tnu_"), "{token}");
    // A wrong token changes nothing; the right one lets the login past the
    // cap, once.
    let with = |token: &str| LoginRequest {
        unlock_token: token.into(),
        ..login("frank@example.com", PASSWORD)
    };
    let e = travelling.login(with("tnu_forged")).await.unwrap_err();
    assert_eq!(reason(&e), Reason::AttemptsExceeded);
    let r = travelling.login(with(&token)).await.unwrap().into_inner();
    assert!(matches!(r.outcome, Some(Outcome::Session(_))));
    let e = env
        .anonymous("192.0.2.51")
        .login(with(&token))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::AttemptsExceeded);
    // Refusals keep coming; unlock emails stop at 5 an hour.
    for a in 0..10 {
        env.anonymous(&format!("192.0.2.{}", 100 + a))
            .login(login("frank@example.com", PASSWORD))
            .await
            .unwrap_err();
    }
    // (They are sent in the background: wait for them, then a while more
    // for any sixth.)
    let unlocks = || async {
        env.outbox
            .sent(
                "frank@example.com",
                tenancy_proto::contacts::MessageTemplate::GenericNotification,
            )
            .await
            .len()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while unlocks().await < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unlocks().await, 5);
}

/// A login the per-email cap refuses for a known user answers without
/// waiting on the mailer (the unlock link is sent in the background):
/// with the outbox stalled, the refusal comes back at once, as it does for
/// an unknown address; the link follows when the outbox moves again.
#[tokio::test]
async fn a_refused_login_does_not_wait_for_the_unlock_email() {
    let env = Env::start_held("unlockqueued").await;
    env.verified_user("hank@example.com").await;
    for a in 0..20 {
        let mut attacker = env.anonymous(&format!("203.0.113.{}", a + 1));
        for _ in 0..5 {
            let e = attacker
                .login(login("hank@example.com", "wrong password here"))
                .await
                .unwrap_err();
            assert_eq!(reason(&e), Reason::CredentialsInvalid);
        }
    }
    env.outbox.hold().await;
    for (email, ip) in [
        ("hank@example.com", "192.0.2.50"),
        ("nobody@example.com", "192.0.2.51"),
    ] {
        let mut c = env.anonymous(ip);
        let password = if email == "hank@example.com" {
            PASSWORD
        } else {
            "wrong password here"
        };
        // Without the queue the first would wait as long as the outbox is
        // held (for ever): a generous bound is no timing assumption.
        let e = tokio::time::timeout(Duration::from_secs(20), c.login(login(email, password)))
            .await
            .expect("answered without waiting for the mailer")
            .unwrap_err();
        let want = if email == "hank@example.com" {
            Reason::AttemptsExceeded
        } else {
            Reason::CredentialsInvalid
        };
        assert_eq!(reason(&e), want);
    }
    env.outbox.release();
    let token = env
        .outbox
        .wait_token("hank@example.com", "action_url", None)
        .await;
    assert!(token.starts_with("tnu_"), "{token}");
}

/// Concurrent wrong passwords from one address are checked and counted one
/// after the other: only the 5 free ones reach the password check.
#[tokio::test]
async fn concurrent_failures_cannot_all_pass_the_throttle() {
    let env = Env::start("throttlerace").await;
    env.verified_user("gina@example.com").await;
    let attempts = (0..20).map(|_| {
        let mut c = env.anonymous("203.0.113.99");
        async move {
            c.login(login("gina@example.com", "wrong password here"))
                .await
                .unwrap_err()
        }
    });
    let errors = futures::future::join_all(attempts).await;
    let checked = errors
        .iter()
        .filter(|e| reason(e) == Reason::CredentialsInvalid)
        .count();
    let refused = errors
        .iter()
        .filter(|e| reason(e) == Reason::AttemptsExceeded)
        .count();
    assert_eq!((checked, refused), (5, 15));
}

/// Successes and failures from one address at once: the success's refund
/// and the failures' counting take the shared counters (per address, per
/// email) in one order, so none deadlocks (PostgreSQL answered "deadlock
/// detected", INTERNAL, when a success released them in another order).
#[tokio::test]
async fn concurrent_successes_and_failures_from_one_address_all_get_an_answer() {
    let env = Env::start("throttleorder").await;
    // Three attempts per email: at most 5 of one email from one address
    // are checked at once (the rest wait out a back-off), by design.
    let emails: Vec<String> = (0..8).map(|i| format!("hal{i}@example.com")).collect();
    for email in &emails {
        env.verified_user(email).await;
    }
    let attempts = (0..24).map(|i| {
        let mut c = env.anonymous("203.0.113.77");
        let email = emails[i % emails.len()].clone();
        async move {
            // A wrong password now and then, on the same counters.
            let password = if i % 6 == 5 {
                "wrong password here"
            } else {
                PASSWORD
            };
            c.login(login(&email, password)).await
        }
    });
    let results = futures::future::join_all(attempts).await;
    for r in &results {
        if let Err(e) = r {
            assert_eq!(reason(e), Reason::CredentialsInvalid, "{e:?}");
        }
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
}

/// Admission control of the hashing pool: logins whose expected wait for a
/// core exceeds `auth.password_hash_max_wait`, or that could not finish
/// before the caller's deadline, are refused at once with UPSTREAM_BUSY and
/// a retry delay instead of queueing.
#[tokio::test]
async fn logins_beyond_the_hashing_pool_are_shed_at_once() {
    use tonic_types::StatusExt as _;
    let env = Env::start_with("shed", |config| {
        // Slow hashes (~0.2 s) and no queueing.
        config.auth.argon2_memory_kib = 64 * 1024;
        config.auth.argon2_iterations = 3;
        config.auth.password_hash_max_wait = Duration::ZERO;
    })
    .await;
    env.verified_user("ivan@example.com").await;
    let attempts = (0..24).map(|i| {
        let mut c = env.anonymous(&format!("198.51.100.{}", 30 + i));
        async move { c.login(login("ivan@example.com", PASSWORD)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let shed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(ok >= 1, "none admitted");
    assert!(!shed.is_empty(), "none shed of {}", results.len());
    for e in &shed {
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        assert_eq!(reason(e), Reason::UpstreamBusy);
        assert!(e.get_details_retry_info().is_some(), "{e:?}");
    }
    // A caller whose deadline is shorter than one hash (~0.5 s) is refused
    // at once (not left to time out in the queue).
    let env = Env::start_with("sheddeadline", |config| {
        config.auth.argon2_memory_kib = 128 * 1024;
        config.auth.argon2_iterations = 4;
    })
    .await;
    env.verified_user("jo@example.com").await;
    let mut request = tonic::Request::new(login("jo@example.com", PASSWORD));
    request.set_timeout(Duration::from_millis(150));
    let e = env
        .anonymous("198.51.100.9")
        .login(request)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e), Reason::UpstreamBusy);
}

/// A login the hashing pool sheds was never checked, so it counts as no
/// failure: under overload a real user's shed retries must not run them
/// (or their office's address) into the throttle. 330 logins from one
/// address, almost all shed, stay under the per-address cap (300 failures
/// an hour) only if shed ones count nothing.
#[tokio::test]
async fn logins_the_hashing_pool_sheds_count_as_no_failure() {
    let env = Env::start_with("shedcount", |config| {
        config.auth.argon2_memory_kib = 64 * 1024;
        config.auth.argon2_iterations = 3;
        config.auth.password_hash_max_wait = Duration::ZERO;
    })
    .await;
    env.verified_user("kim@example.com").await;
    let mut shed = 0;
    for round in 0..11 {
        let attempts = (0..30).map(|i| {
            let mut c = env.anonymous("198.51.100.77");
            let email = format!("nobody{round}x{i}@example.com");
            async move { c.login(login(&email, PASSWORD)).await }
        });
        for r in futures::future::join_all(attempts).await {
            let e = r.unwrap_err();
            if e.code() == tonic::Code::ResourceExhausted {
                assert_eq!(reason(&e), Reason::UpstreamBusy, "{e:?}");
                shed += 1;
            } else {
                assert_eq!(reason(&e), Reason::CredentialsInvalid, "{e:?}");
            }
        }
    }
    assert!(shed > 300, "only {shed} of 330 shed");
    env.anonymous("198.51.100.77")
        .login(login("kim@example.com", PASSWORD))
        .await
        .expect("the address was throttled for logins never checked");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let env = Env::start("refresh").await;
    env.verified_user("erin@example.com").await;
    let s = session(&env, "erin@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    let next = c
        .refresh_session(RefreshSessionRequest {
            refresh_token: s.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(next.session_id, s.session_id);
    assert_ne!(next.refresh_token, s.refresh_token);
    // Presenting the rotated-out token revokes the whole session.
    let e = c
        .refresh_session(RefreshSessionRequest {
            refresh_token: s.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RefreshTokenReused);
    let e = c
        .refresh_session(RefreshSessionRequest {
            refresh_token: next.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RefreshTokenInvalid);
    // The revocation is in the log.
    let mut stream = env
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: 0,
            watcher: "test".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    match first.item.unwrap() {
        Item::Event(e) => {
            assert_eq!(e.reason, RevocationReason::RefreshTokenReused as i32);
            match e.kind.unwrap() {
                revocation_event::Kind::Session(sr) => assert_eq!(sr.session_id, s.session_id),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        stream.next().await.unwrap().unwrap().item,
        Some(Item::CaughtUp(_))
    ));
}

#[tokio::test]
async fn sessions_end_after_the_idle_timeout_and_the_absolute_lifetime() {
    let env = Env::start("idle").await;
    env.verified_user("fay@example.com").await;
    let s = session(&env, "fay@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    env.advance(Duration::from_secs(14 * 24 * 3600 + 1));
    let e = c
        .refresh_session(RefreshSessionRequest {
            refresh_token: s.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RefreshTokenInvalid);
    // Refreshing every 10 days keeps it alive, but only up to 30 days.
    let s = session(&env, "fay@example.com").await;
    let mut token = s.refresh_token;
    for _ in 0..2 {
        env.advance(Duration::from_secs(10 * 24 * 3600));
        token = c
            .refresh_session(RefreshSessionRequest {
                refresh_token: token,
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
            .refresh_token;
    }
    env.advance(Duration::from_secs(10 * 24 * 3600 + 1));
    let e = c
        .refresh_session(RefreshSessionRequest {
            refresh_token: token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RefreshTokenInvalid);
}

#[tokio::test]
async fn logout_ends_the_session_and_is_streamed_live() {
    let env = Env::start("logout").await;
    let user = env.verified_user("gus@example.com").await;
    let s = session(&env, "gus@example.com").await;
    let mut stream = env
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: 0,
            watcher: "test".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        stream.next().await.unwrap().unwrap().item,
        Some(Item::CaughtUp(CaughtUp { head_position: 0 }))
    ));
    let mut principal = tenancy_testkit::member(&user, "", tenancy_testkit::Role::Unspecified);
    principal.account_id = None;
    principal.session_id = Some(s.session_id.clone());
    env.as_principal(principal)
        .logout(LogoutRequest {})
        .await
        .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match live.item.unwrap() {
        Item::Event(e) => assert_eq!(e.reason, RevocationReason::Logout as i32),
        other => panic!("{other:?}"),
    }
    let e = env
        .anonymous("198.51.100.7")
        .refresh_session(RefreshSessionRequest {
            refresh_token: s.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RefreshTokenInvalid);
}

#[tokio::test]
async fn revoke_account_access_revokes_api_tokens_for_good_and_leaves_sessions() {
    let env = Env::start("revokeaccess").await;
    let user = env.verified_user("hal@example.com").await;
    let s = env.login("hal@example.com").await;
    let account = uuid::Uuid::now_v7().to_string();
    let mut portal = env.as_principal(tenancy_runtime::Principal {
        user_id: Some(user.clone()),
        account_id: Some(account.clone()),
        role: tenancy_testkit::Role::Manager,
        session_id: Some(s.session_id.clone()),
        token_kind: tenancy_testkit::TokenKind::Portal,
        client_ip: Some("198.51.100.7".parse().unwrap()),
        request_id: "r".into(),
        ..tenancy_runtime::Principal::default()
    });
    let token = portal
        .create_api_token(CreateApiTokenRequest {
            name: "ci".into(),
            expire_time: None,
            read_only: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token_id = token.api_token.unwrap().id;
    let mut internal = env.internal();
    let r = internal
        .revoke_account_access(RevokeAccountAccessRequest {
            user_id: user.clone(),
            account_id: account.clone(),
            reason: RevocationReason::MemberSuspended as i32,
            change_time: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.revoked_api_token_count, 1);
    assert!(r.position >= 1);
    let e = internal
        .introspect_api_token(IntrospectApiTokenRequest {
            secret: token.secret,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TokenRevoked);
    let e = internal
        .revoke_account_access(RevokeAccountAccessRequest {
            user_id: user.clone(),
            account_id: account.clone(),
            reason: RevocationReason::Logout as i32,
            change_time: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ReasonInvalid);
    // The log holds the API token's revocation and nothing that ends the
    // session or the user's tokens: the session still refreshes.
    let mut stream = internal
        .watch_revocations(WatchRevocationsRequest {
            from_position: 0,
            watcher: "t".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    loop {
        match stream.next().await.unwrap().unwrap().item.unwrap() {
            Item::Event(e) => kinds.push(e.kind.unwrap()),
            Item::CaughtUp(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(&kinds[..], [revocation_event::Kind::ApiToken(t)] if t.api_token_id == token_id),
        "{kinds:?}"
    );
    env.anonymous("198.51.100.7")
        .refresh_session(RefreshSessionRequest {
            refresh_token: s.refresh_token,
        })
        .await
        .unwrap();
    // Resuming beyond the head starts with a reset.
    let mut stream = internal
        .watch_revocations(WatchRevocationsRequest {
            from_position: 1000,
            watcher: "t".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        stream.next().await.unwrap().unwrap().item,
        Some(Item::Reset(_))
    ));
}

#[tokio::test]
async fn emergency_rotation_withdraws_the_old_key_and_normal_rotation_publishes_ahead() {
    let env = Env::start("rotate").await;
    let mut internal = env.internal();
    let before = jwks(&env).await;
    assert_eq!(before.len(), 1);
    let r = internal
        .rotate_signing_key(RotateSigningKeyRequest {
            revoke_current: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.previous_kid, before[0].kid);
    let keys = jwks(&env).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].kid, before[0].kid, "the old key still signs");
    let e = internal
        .rotate_signing_key(RotateSigningKeyRequest {
            revoke_current: false,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::RotationInProgress);
    env.advance(Duration::from_secs(301));
    let keys = jwks(&env).await;
    assert_eq!(keys[0].kid, r.new_key.as_ref().unwrap().kid);
    env.advance(Duration::from_secs(601));
    assert_eq!(
        jwks(&env).await.len(),
        1,
        "retired key dropped after token lifetime"
    );
    let e = internal
        .rotate_signing_key(RotateSigningKeyRequest {
            revoke_current: true,
        })
        .await
        .unwrap()
        .into_inner();
    let keys = jwks(&env).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid, e.new_key.unwrap().kid);
}

#[tokio::test]
async fn every_login_attempt_of_a_known_user_is_in_the_login_history() {
    let env = Env::start("history").await;
    let user = env.verified_user("ida@example.com").await;
    let mut c = env.anonymous("198.51.100.9");
    c.login(login("ida@example.com", "wrong password here"))
        .await
        .unwrap_err();
    let s = session(&env, "ida@example.com").await;
    // The refusal's event is written off the response path: waited for.
    let mut events = Vec::new();
    for _ in 0..1500 {
        events = env
            .in_session(&user, &s.session_id, None)
            .list_login_events(ListLoginEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .login_events;
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes: Vec<i32> = events.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            LoginOutcome::Success as i32,
            LoginOutcome::FailureBadCredentials as i32
        ]
    );
    assert_eq!(events[1].ip_address, "198.51.100.9");
    assert_eq!(events[1].method, LoginMethod::Password as i32);
    assert_eq!(events[1].device, "Firefox on Linux");
    let e = env
        .in_session(&user, &s.session_id, None)
        .list_login_events(ListLoginEventsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TimeRangeInvalid);
}

#[tokio::test]
async fn the_login_history_pages_by_keyset_with_filters_in_every_page() {
    let env = Env::start("history_pages").await;
    let user = env.verified_user("jo@example.com").await;
    let mut anon = env.anonymous("198.51.100.10");
    for _ in 0..4 {
        anon.login(login("jo@example.com", "wrong password here"))
            .await
            .unwrap_err();
        env.advance(Duration::from_secs(60));
    }
    let s = session(&env, "jo@example.com").await;
    let mut c = env.in_session(&user, &s.session_id, None);
    // The refusals' events are written off the response path: waited for.
    for _ in 0..1500 {
        let all = c
            .list_login_events(ListLoginEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .login_events;
        if all.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = c
            .list_login_events(ListLoginEventsRequest {
                page_size: 2,
                page_token: token.clone(),
                outcomes: vec![LoginOutcome::FailureBadCredentials as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.login_events.len() <= 2);
        seen.extend(page.login_events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Every failure exactly once, newest first, the success filtered out.
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.iter()
            .all(|e| e.outcome == LoginOutcome::FailureBadCredentials as i32)
    );
    let times: Vec<i64> = seen.iter().map(|e| e.time.unwrap().seconds).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    // A token of this list is refused by another user's list.
    let other = env.verified_user("kim@example.com").await;
    let o = session(&env, "kim@example.com").await;
    let first = c
        .list_login_events(ListLoginEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = env
        .in_session(&other, &o.session_id, None)
        .list_login_events(ListLoginEventsRequest {
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PageTokenInvalid);
}

/// The session ids of the next `n` events of a watch, with their positions.
async fn next_events(
    stream: &mut tonic::Streaming<WatchRevocationsResponse>,
    n: usize,
) -> Vec<(i64, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event within 5 s")
            .unwrap()
            .unwrap()
            .item
            .unwrap();
        match item {
            Item::Event(e) => match e.kind.unwrap() {
                revocation_event::Kind::Session(s) => seen.push((e.position, s.session_id)),
                other => panic!("{other:?}"),
            },
            Item::CaughtUp(_) | Item::Heartbeat(_) => {}
            other => panic!("{other:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn revocations_of_two_replicas_reach_every_watcher_in_one_gapless_order() {
    let env = Env::start("replicas").await;
    let b = env.replica().await;
    let user = env.verified_user("ray@example.com").await;
    // A gateway watching replica B.
    let mut on_b = b
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: 0,
            watcher: "gateway-b".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(session(&env, "ray@example.com").await.session_id);
    }
    // Logouts through both replicas at once.
    let logouts = sessions.iter().enumerate().map(|(i, sid)| {
        let mut principal = tenancy_testkit::member(&user, "", tenancy_testkit::Role::Unspecified);
        principal.account_id = None;
        principal.session_id = Some(sid.clone());
        let mut client = if i % 2 == 0 {
            env.as_principal(principal)
        } else {
            b.as_principal(principal)
        };
        async move { client.logout(LogoutRequest {}).await.unwrap() }
    });
    futures::future::join_all(logouts).await;
    let from_b = next_events(&mut on_b, sessions.len()).await;
    let positions: Vec<i64> = from_b.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=8).collect::<Vec<i64>>(),
        "gapless, in order"
    );
    let mut ids: Vec<&String> = from_b.iter().map(|(_, s)| s).collect();
    ids.sort();
    let mut want: Vec<&String> = sessions.iter().collect();
    want.sort();
    assert_eq!(ids, want, "every logout, from either replica");
    // A gateway reconnecting to replica A from the middle misses nothing.
    let mut on_a = env
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: 4,
            watcher: "gateway-a".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_events(&mut on_a, 4).await, from_b[4..].to_vec());
}

/// ListSessions pages (keyset, newest first): 120 sessions walked 50 at a
/// time come back each exactly once, even with sessions created in the
/// same millisecond and sessions used between pages. ListMemberSessions
/// pages the same way. A malformed page token, or one issued by the other
/// list, is INVALID_ARGUMENT PAGE_TOKEN_INVALID.
#[tokio::test]
async fn sessions_are_listed_in_pages_without_duplicates_or_gaps() {
    let env = Env::start("sessionpages").await;
    let email = "paula@example.com";
    let user = env.verified_user(email).await;
    // Oldest first; three at a time share their creation millisecond.
    let mut created = Vec::new();
    for i in 0..120 {
        created.push(session(&env, email).await);
        if i % 3 == 0 {
            env.advance(Duration::from_millis(1));
        }
    }
    let mut me = env.in_session(&user, &created[0].session_id, None);
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = me
            .list_sessions(ListSessionsRequest {
                page_size: 50,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(page.sessions.len());
        seen.extend(page.sessions.iter().map(|s| s.id.clone()));
        // Used meanwhile (the oldest, on the last page, and one listed
        // already), and a new one made: none moves across pages.
        env.advance(Duration::from_secs(1));
        for used in [0, 119] {
            let refreshed = env.refresh(created[used].refresh_token.clone()).await;
            created[used].refresh_token = refreshed.refresh_token;
        }
        session(&env, email).await;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    // The sessions made while paging are newer than the first page: not in
    // this walk.
    assert_eq!(pages, [50, 50, 20]);
    let unique: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a session listed twice");
    let want: std::collections::BTreeSet<_> =
        created.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(unique, want);
    // Default size: 50.
    let first = me
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.sessions.len(), 50);

    for bad in ["not a token", "eyJ9"] {
        let e = me
            .list_sessions(ListSessionsRequest {
                page_size: 10,
                page_token: bad.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert_eq!(reason(&e), Reason::PageTokenInvalid);
    }

    // ListMemberSessions: the member's sessions in the account, in pages;
    // ListSessions' token is not one of its tokens.
    let account = env.create_account(&user).await;
    for _ in 0..3 {
        env.anonymous("198.51.100.7")
            .login(LoginRequest {
                account_id: account.clone(),
                ..login(email, PASSWORD)
            })
            .await
            .unwrap();
    }
    let mut owner = env.as_principal(tenancy_testkit::member(
        &user,
        &account,
        tenancy_testkit::Role::Owner,
    ));
    let list = |page_token: String| ListMemberSessionsRequest {
        user_id: user.clone(),
        page_size: 2,
        page_token,
    };
    let one = owner
        .list_member_sessions(list(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.sessions.len(), 2);
    let two = owner
        .list_member_sessions(list(one.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(two.next_page_token.is_empty());
    assert_eq!(two.sessions.len(), 1);
    let mut ids: Vec<_> = one
        .sessions
        .iter()
        .chain(&two.sessions)
        .map(|s| s.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let e = owner
        .list_member_sessions(list(first.next_page_token))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PageTokenInvalid);
}

/// A refused login of a known user answers without waiting for its login
/// event to be written (which an unknown email never writes): no user
/// enumeration by timing. Proved by holding the login-event table locked
/// (PostgreSQL: SQLite has one write lock for everything, which the
/// attempt counter needs too): the refusal still answers, and its event
/// is written once the lock goes.
#[tokio::test]
async fn a_refused_login_of_a_known_user_does_not_wait_for_its_event() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    if !tenancy_testkit::TestDatabase::is_postgres() {
        return;
    }
    let env = Env::start("refusedfast").await;
    let email = "lena@example.com";
    let user = env.verified_user(email).await;
    let db = Database::connect(&env.db.url).await.unwrap();
    let tx = db.begin().await.unwrap();
    tx.execute_unprepared("LOCK TABLE identity_login_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        env.anonymous("198.51.100.44")
            .login(login(email, "wrong password here")),
    )
    .await
    .expect("the refusal waited for its login event")
    .unwrap_err();
    assert_eq!(reason(&refused), Reason::CredentialsInvalid);
    tx.rollback().await.unwrap();
    let s = session(&env, email).await;
    for _ in 0..1500 {
        let events = env
            .in_session(&user, &s.session_id, None)
            .list_login_events(ListLoginEventsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .login_events;
        if events
            .iter()
            .any(|e| e.outcome() == LoginOutcome::FailureBadCredentials)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the refused login was never recorded");
}

/// Watches from `from` and collects the sessions of the events up to
/// `caught_up`, and its head position: the same whether the catch-up is
/// asked for in batches (which then hold every event) or one event a
/// message.
async fn watched_sessions(env: &Env, from: i64) -> (Vec<String>, i64) {
    let single = watched_sessions_as(env, from, false).await;
    let batched = watched_sessions_as(env, from, true).await;
    assert_eq!(batched, single, "batched and single catch-ups differ");
    single
}

async fn watched_sessions_as(env: &Env, from: i64, batched: bool) -> (Vec<String>, i64) {
    let mut stream = env
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: from,
            watcher: "test".into(),
            batched_catch_up: batched,
        })
        .await
        .unwrap()
        .into_inner();
    let mut sessions = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .item
            .unwrap();
        let events = match item {
            Item::Event(e) if !batched => vec![e],
            Item::Batch(b) if batched => {
                assert!(!b.events.is_empty(), "an empty batch");
                b.events
            }
            Item::CaughtUp(CaughtUp { head_position }) => return (sessions, head_position),
            other => panic!("batched {batched}: {other:?}"),
        };
        for e in events {
            match e.kind.unwrap() {
                revocation_event::Kind::Session(s) => sessions.push(s.session_id),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_watch_from_zero_gets_only_the_revocations_still_in_effect_and_a_resume_gets_every_one() {
    let env = Env::start("inefft").await;
    let user = env.verified_user("hal@example.com").await;
    let logout = |session: &str| {
        let mut principal = tenancy_testkit::member(&user, "", tenancy_testkit::Role::Unspecified);
        principal.account_id = None;
        principal.session_id = Some(session.to_owned());
        env.as_principal(principal)
    };
    let old: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let s = session(&env, "hal@example.com").await;
            logout(&s.session_id)
                .logout(LogoutRequest {})
                .await
                .unwrap();
            ids.push(s.session_id);
        }
        ids
    };
    // Two hours on: every token the first two revocations refuse has
    // expired (10 minutes' lifetime) and a gateway would have dropped them.
    env.advance(Duration::from_secs(2 * 3600));
    let recent = session(&env, "hal@example.com").await;
    logout(&recent.session_id)
        .logout(LogoutRequest {})
        .await
        .unwrap();

    // A fresh watcher rebuilds from what still matters, and learns the head.
    let (sessions, head) = watched_sessions(&env, 0).await;
    assert_eq!(sessions, vec![recent.session_id.clone()]);
    assert_eq!(head, 3, "caught up to the head, past the entries skipped");
    // A watcher resuming gets every entry after its position, in effect or
    // not: the log's order is its contract.
    let (sessions, head) = watched_sessions(&env, 1).await;
    assert_eq!(sessions, vec![old[1].clone(), recent.session_id.clone()]);
    assert_eq!(head, 3);
    // Within the hour a revocation is sent from 0 although its tokens'
    // expiry has passed (a gateway holds a session's an hour).
    env.advance(Duration::from_secs(20 * 60));
    let (sessions, _) = watched_sessions(&env, 0).await;
    assert_eq!(sessions, vec![recent.session_id.clone()]);
    env.advance(Duration::from_secs(41 * 60));
    let (sessions, head) = watched_sessions(&env, 0).await;
    assert!(sessions.is_empty(), "{sessions:?}");
    assert_eq!(head, 3);
}

/// A catch-up of several pages (1000 events each) asked for in batches:
/// the batches hold exactly the events the single messages hold, in order,
/// whether the watcher rebuilds (from 0: only what is still in effect) or
/// resumes (every event after its position), and none is over 1000 events.
#[tokio::test]
async fn a_batched_catch_up_of_many_pages_holds_exactly_the_single_events() {
    use sea_orm::{ConnectionTrait, Database};
    let env = Env::start("batchcu").await;
    let now = tenancy_runtime::Clock::now(&env.clock).millis();
    // 2,345 session revocations behind the service's back; every seventh
    // ended two hours ago (a rebuild skips it, a resume does not).
    const EVENTS: i64 = 2_345;
    let db = Database::connect(&env.db.url).await.unwrap();
    let rows: Vec<String> = (1..=EVENTS)
        .map(|p| {
            let (create, expire) = if p % 7 == 0 {
                (now - 3 * 3_600_000, now - 2 * 3_600_000)
            } else {
                (now, now + 600_000)
            };
            format!("({p}, {create}, {expire}, 1, 'session', 'session-{p}', 'user-{p}', '', '')")
        })
        .collect();
    for chunk in rows.chunks(500) {
        db.execute_unprepared(&format!(
            "INSERT INTO identity_revocations (position, create_time, expire_time, reason, kind, \
             subject, user_id, account_id, kids) VALUES {}",
            chunk.join(", ")
        ))
        .await
        .unwrap();
    }
    db.execute_unprepared(&format!(
        "UPDATE identity_revocation_head SET position = {EVENTS} WHERE id = 1"
    ))
    .await
    .unwrap();
    db.close().await.unwrap();

    let (sessions, head) = watched_sessions(&env, 0).await;
    let in_effect: Vec<String> = (1..=EVENTS)
        .filter(|p| p % 7 != 0)
        .map(|p| format!("session-{p}"))
        .collect();
    assert_eq!(sessions, in_effect);
    assert_eq!(head, EVENTS);
    let (sessions, head) = watched_sessions(&env, 500).await;
    let after: Vec<String> = (501..=EVENTS).map(|p| format!("session-{p}")).collect();
    assert_eq!(sessions, after, "a resume gets every event after it");
    assert_eq!(head, EVENTS);

    // Batches: several, none over 1000 events, positions ascending.
    let mut stream = env
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: 0,
            watcher: "test".into(),
            batched_catch_up: true,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut batches, mut last) = (0, 0);
    loop {
        match stream.next().await.unwrap().unwrap().item.unwrap() {
            Item::Batch(b) => {
                batches += 1;
                assert!(!b.events.is_empty() && b.events.len() <= 1000);
                for e in b.events {
                    assert!(e.position > last);
                    last = e.position;
                }
            }
            Item::CaughtUp(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(batches >= 3, "{batches} batches");
}
