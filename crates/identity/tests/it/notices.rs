//! Every security notice identity promises reaches the real contacts
//! outbox, and none can be triggered without the user's credentials or
//! more often than the limits say: a login from a new network, 2FA turned
//! on, a recovery code used, a failed code-word check.

use std::time::Duration;

use tenancy_proto::contacts::{MessageTemplate, OutboxMessage};
use tenancy_proto::identity::complete_mfa_request::SecondFactor;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;

use crate::harness::{Env, PASSWORD, reason};
use crate::mfa::{answer, challenge, challenge_by, code, enrolled, now_s};

async fn new_logins(env: &Env, email: &str) -> Vec<OutboxMessage> {
    env.outbox
        .sent(email, MessageTemplate::SecurityNewLogin)
        .await
}

#[tokio::test]
async fn a_login_from_a_new_network_is_notified_but_not_the_first_login_or_a_known_network() {
    let env = Env::start("notice_newlogin").await;
    env.verified_user("ann@example.com").await;
    // The first login ever, then again from the same address: nothing.
    env.login_from("198.51.100.7", "ann@example.com").await;
    env.login_from("198.51.100.7", "ann@example.com").await;
    assert!(new_logins(&env, "ann@example.com").await.is_empty());
    // A wrong password from a new address: nothing either.
    let e = env
        .anonymous("203.0.113.9")
        .login(LoginRequest {
            email: "ann@example.com".into(),
            password: "not the password at all".into(),
            account_id: String::new(),
            unlock_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::CredentialsInvalid);
    assert!(new_logins(&env, "ann@example.com").await.is_empty());
    // The right password from there: one notice, with what the user needs.
    env.login_from("203.0.113.9", "ann@example.com").await;
    let sent = new_logins(&env, "ann@example.com").await;
    assert_eq!(sent.len(), 1);
    let data = &sent[0].template_data;
    assert_eq!(data["ip"], "203.0.113.9");
    assert!(data["user_agent"].contains("Firefox"), "{data:?}");
    assert_eq!(data["login_time"], "2023-11-14T22:13:20Z");
    assert!(data["sessions_url"].starts_with("http"), "{data:?}");
    // Known from now on.
    env.login_from("203.0.113.9", "ann@example.com").await;
    assert_eq!(new_logins(&env, "ann@example.com").await.len(), 1);
    // IPv6: one notice per /64, not per address inside it.
    env.login_from("2001:db8:1:2::1", "ann@example.com").await;
    env.login_from("2001:db8:1:2:aaaa::99", "ann@example.com")
        .await;
    assert_eq!(new_logins(&env, "ann@example.com").await.len(), 2);
    env.login_from("2001:db8:1:3::1", "ann@example.com").await;
    assert_eq!(new_logins(&env, "ann@example.com").await.len(), 3);
    // A network not used for more than 90 days is new again.
    env.advance(Duration::from_secs(91 * 24 * 3600));
    // (Counting is no use here: the outbox's retention may drop the month-old
    // messages any time now. None was about this address before.)
    env.login_from("198.51.100.7", "ann@example.com").await;
    let sent = new_logins(&env, "ann@example.com").await;
    assert!(
        sent.iter().any(|m| m.template_data["ip"] == "198.51.100.7"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn new_network_notices_are_bounded_per_user_per_hour() {
    let env = Env::start("notice_newlogin_cap").await;
    env.verified_user("bea@example.com").await;
    env.login_from("198.51.100.7", "bea@example.com").await;
    // Someone with the password logs in from 7 new addresses: 5 notices.
    for i in 1..=7 {
        env.login_from(&format!("203.0.113.{i}"), "bea@example.com")
            .await;
    }
    assert_eq!(new_logins(&env, "bea@example.com").await.len(), 5);
    // An hour later the user is told again.
    env.advance(Duration::from_secs(3601));
    env.login_from("203.0.113.100", "bea@example.com").await;
    assert_eq!(new_logins(&env, "bea@example.com").await.len(), 6);
    // Other users are not affected by Bea's limit.
    env.verified_user("cid@example.com").await;
    env.login_from("198.51.100.7", "cid@example.com").await;
    env.login_from("203.0.113.1", "cid@example.com").await;
    assert_eq!(new_logins(&env, "cid@example.com").await.len(), 1);
}

#[tokio::test]
async fn a_2fa_login_from_a_new_network_is_notified_only_after_the_second_factor() {
    let env = Env::start("notice_newlogin_mfa").await;
    let (_, secret, _) = enrolled(&env, "dan@example.com").await;
    let mut far = env.anonymous("203.0.113.50");
    let token = challenge_by(&mut far, "dan@example.com", "").await;
    let e = far
        .complete_mfa(answer(&token, SecondFactor::TotpCode("000000".into())))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SecondFactorInvalid);
    assert!(new_logins(&env, "dan@example.com").await.is_empty());
    far.complete_mfa(answer(
        &token,
        SecondFactor::TotpCode(code(&secret, now_s(&env))),
    ))
    .await
    .unwrap();
    let sent = new_logins(&env, "dan@example.com").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].template_data["ip"], "203.0.113.50");
}

#[tokio::test]
async fn turning_2fa_on_is_notified() {
    let env = Env::start("notice_totp_on").await;
    assert!(
        env.outbox
            .sent("eve@example.com", MessageTemplate::SecurityTotpEnabled)
            .await
            .is_empty()
    );
    enrolled(&env, "eve@example.com").await;
    let sent = env
        .outbox
        .sent("eve@example.com", MessageTemplate::SecurityTotpEnabled)
        .await;
    assert_eq!(sent.len(), 1);
    let data = &sent[0].template_data;
    assert_eq!(data["ip"], "198.51.100.7");
    assert!(data["security_url"].starts_with("http"), "{data:?}");
    assert!(!data["change_time"].is_empty());
}

#[tokio::test]
async fn every_used_recovery_code_is_notified_with_the_codes_left() {
    let env = Env::start("notice_recovery").await;
    let (user, _, codes) = enrolled(&env, "fay@example.com").await;
    let used = || async {
        env.outbox
            .sent("fay@example.com", MessageTemplate::SecurityRecoveryCodeUsed)
            .await
    };
    // A wrong recovery code is no use of one.
    let token = challenge(&env, "fay@example.com").await;
    let mut c = env.anonymous("198.51.100.7");
    c.complete_mfa(answer(
        &token,
        SecondFactor::RecoveryCode("nope-nope".into()),
    ))
    .await
    .unwrap_err();
    assert!(used().await.is_empty());
    // Logging in with one.
    let s = c
        .complete_mfa(answer(&token, SecondFactor::RecoveryCode(codes[0].clone())))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let sent = used().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].template_data["codes_remaining"], "9");
    assert_eq!(sent[0].template_data["ip"], "198.51.100.7");
    // Re-authenticating with one.
    env.in_session(&user, &s.session_id, None)
        .reauthenticate(ReauthenticateRequest {
            password: PASSWORD.into(),
            second_factor: Some(reauthenticate_request::SecondFactor::RecoveryCode(
                codes[1].clone(),
            )),
        })
        .await
        .unwrap();
    let sent = used().await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].template_data["codes_remaining"], "8");
}

#[tokio::test]
async fn every_failed_code_word_check_is_notified() {
    let env = Env::start("notice_codeword").await;
    let user = env.verified_user("gus@example.com").await;
    let failed = || async {
        env.outbox
            .sent("gus@example.com", MessageTemplate::SecurityCodeWordFailed)
            .await
    };
    let check = |word: &str| VerifyCodeWordRequest {
        user_id: user.clone(),
        code_word: word.into(),
        staff_user_id: uuid::Uuid::now_v7().to_string(),
        account_id: String::new(),
    };
    let mut internal = env.internal();
    // No code word set: a failed check all the same.
    assert!(
        !internal
            .verify_code_word(check("blue moon"))
            .await
            .unwrap()
            .into_inner()
            .r#match
    );
    assert_eq!(failed().await.len(), 1);
    let s = env.login("gus@example.com").await;
    env.in_session(&user, &s.session_id, None)
        .set_code_word(SetCodeWordRequest {
            code_word: "blue moon".into(),
        })
        .await
        .unwrap();
    // A match is not notified; a wrong word is.
    internal.verify_code_word(check("Blue Moon")).await.unwrap();
    assert_eq!(failed().await.len(), 1);
    internal.verify_code_word(check("red sun")).await.unwrap();
    let sent = failed().await;
    assert_eq!(sent.len(), 2);
    assert!(sent[1].template_data["security_url"].starts_with("http"));
    assert!(!sent[1].template_data["check_time"].is_empty());
    // Checks beyond the limit are refused and send nothing.
    for _ in 0..3 {
        internal.verify_code_word(check("red sun")).await.unwrap();
    }
    assert_eq!(failed().await.len(), 5);
    let e = internal
        .verify_code_word(check("red sun"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::CodeWordAttemptsExceeded);
    assert_eq!(failed().await.len(), 5);
}

#[tokio::test]
async fn the_upgrade_remembers_the_networks_of_recent_logins_from_the_history() {
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::MigratorTrait;
    use tenancy_identity::migration::Migrator;

    let db = tenancy_testkit::TestDatabase::new("notice_upgrade").await;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    // The schema before the login-network table, with some history.
    Migrator::up(&conn, Some(1)).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 24 * 3600 * 1000;
    let user = uuid::Uuid::now_v7().to_string();
    let password = LoginMethod::Password as i32;
    let success = LoginOutcome::Success as i32;
    for (ip, method, outcome, time) in [
        ("2001:db8:1:2::5", password, success, now - day),
        (
            "2001:db8:1:2::6",
            LoginMethod::Totp as i32,
            success,
            now - 2 * day,
        ),
        (
            "203.0.113.9",
            password,
            LoginOutcome::FailureBadCredentials as i32,
            now,
        ),
        ("198.51.100.1", password, success, now - 200 * day),
        ("198.51.100.2", LoginMethod::Refresh as i32, success, now),
    ] {
        conn.execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "INSERT INTO identity_login_events (id, user_id, time, ip, user_agent, method, outcome) \
             VALUES ($1, $2, $3, $4, '', $5, $6)",
            [
                uuid::Uuid::now_v7().to_string().into(),
                user.clone().into(),
                time.into(),
                ip.into(),
                method.into(),
                outcome.into(),
            ],
        ))
        .await
        .unwrap();
    }
    Migrator::up(&conn, None).await.unwrap();
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT user_id, network, last_time FROM identity_login_networks",
        ))
        .await
        .unwrap();
    let remembered: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "user_id").unwrap(),
                r.try_get("", "network").unwrap(),
                r.try_get("", "last_time").unwrap(),
            )
        })
        .collect();
    // Only sessions created within 90 days count; one row per network.
    assert_eq!(
        remembered,
        [(user, "2001:db8:1:2::/64".to_owned(), now - day)]
    );
}
