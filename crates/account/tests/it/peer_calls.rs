//! Side effects in identity that a rule depends on are durable: a member's
//! loss of access is written with the call that ends their API tokens
//! (`account_peer_calls`), delivered until identity acknowledges, and a
//! repeated delivery is harmless.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tenancy_proto::account as pb;
use tenancy_proto::identity as ipb;
use tenancy_runtime::clock::Clock;
use tenancy_runtime::config::ServiceName;
use tenancy_testkit::{Reason, Role};
use tonic::Code;

use crate::{Env, reason};

/// Calls not yet acknowledged by their peer.
async fn pending(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM account_peer_calls",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Identity's answer for an API token secret.
async fn introspect(
    env: &Env,
    secret: &str,
) -> Result<ipb::IntrospectApiTokenResponse, tonic::Status> {
    env.identity_internal()
        .await
        .introspect_api_token(ipb::IntrospectApiTokenRequest {
            secret: secret.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Polls until `done` or 30 s passed (a loaded CI machine, identity's
/// restart, the worker's backoff of at most 5 s).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_suspension_made_while_identity_is_down_still_ends_api_tokens_for_good() {
    let mut env = Env::new().await;
    let db = Database::connect(&env.database_url).await.unwrap();
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let (token, secret) = env.api_token_with_secret(&manager, &account).await;
    assert_eq!(introspect(&env, &secret).await.unwrap().api_token_id, token);

    env.peers.stop(ServiceName::Identity).await;
    // The suspension is made (gateways deny from the policy log at once);
    // the call to identity waits in the outbox.
    env.suspend(&owner, &account, &manager).await.unwrap();
    let e = env
        .get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberSuspended);
    assert_eq!(pending(&db).await, 1, "the call waits for identity");

    // Identity comes back (a new server on the same database): the worker
    // delivers the revocation without anyone asking.
    env.peers.restart(ServiceName::Identity).await;
    eventually("the outbox is delivered", || async {
        pending(&db).await == 0
    })
    .await;
    assert!(env.api_token_revocations().await.contains(&(
        token.clone(),
        manager.clone(),
        account.clone()
    )));

    // Reactivation restores the membership, not the token.
    env.reactivate(&owner, &account, &manager).await;
    env.get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap();
    let e = introspect(&env, &secret).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(reason(&e), Reason::TokenRevoked);
}

#[tokio::test]
async fn a_membership_change_whose_peer_call_cannot_be_written_is_not_made() {
    let env = Env::new().await;
    let db = Database::connect(&env.database_url).await.unwrap();
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let (_, secret) = env.api_token_with_secret(&manager, &account).await;
    // The outbox cannot be written: the suspension's transaction fails as
    // a whole, so the member is not suspended without the call.
    db.execute_unprepared("ALTER TABLE account_peer_calls RENAME TO account_peer_calls_away")
        .await
        .unwrap();
    let e = env.suspend(&owner, &account, &manager).await.unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    db.execute_unprepared("ALTER TABLE account_peer_calls_away RENAME TO account_peer_calls")
        .await
        .unwrap();
    assert_eq!(pending(&db).await, 0);
    let member = env.member(&owner, &account, &manager).await;
    assert_eq!(member.status, pb::MemberStatus::Active as i32);
    env.get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap();
    introspect(&env, &secret).await.unwrap();
    // With the outbox back, the same change commits with its call, which
    // is delivered before the answer (identity is up).
    env.suspend(&owner, &account, &manager).await.unwrap();
    assert_eq!(pending(&db).await, 0);
    assert_eq!(
        reason(&introspect(&env, &secret).await.unwrap_err()),
        Reason::TokenRevoked
    );
}

#[tokio::test]
async fn a_repeated_or_late_delivery_is_harmless() {
    let env = Env::new().await;
    let db = Database::connect(&env.database_url).await.unwrap();
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let (old, old_secret) = env.api_token_with_secret(&manager, &account).await;
    let change_time = env.clock.now().millis();
    env.suspend(&owner, &account, &manager).await.unwrap();
    assert_eq!(pending(&db).await, 0, "delivered before the answer");
    env.reactivate(&owner, &account, &manager).await;
    env.clock.advance(Duration::from_secs(1));
    let (new, new_secret) = env.api_token_with_secret(&manager, &account).await;
    let events = env.api_token_revocations().await;
    assert_eq!(
        events.iter().filter(|(_, u, _)| *u == manager).count(),
        1,
        "{events:?}"
    );

    // Identity directly: the same call twice revokes nothing more.
    let again = ipb::RevokeAccountAccessRequest {
        user_id: manager.clone(),
        account_id: account.clone(),
        reason: ipb::RevocationReason::MemberSuspended as i32,
        change_time: Some(tenancy_runtime::Timestamp(change_time).to_proto()),
    };
    for _ in 0..2 {
        let answer = env
            .identity_internal()
            .await
            .revoke_account_access(again.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.revoked_api_token_count, 0);
    }

    // Through the outbox: the suspension's call delivered once more (as
    // after a replica died before deleting it) by the worker.
    let payload = serde_json::json!({
        "user_id": manager,
        "account_id": account,
        "reason": ipb::RevocationReason::MemberSuspended as i32,
        "change_time": change_time,
    })
    .to_string();
    db.execute_unprepared(&format!(
        "INSERT INTO account_peer_calls (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
         VALUES ('dup', 1, '{payload}', 0, 0, 0, NULL, '')"
    ))
    .await
    .unwrap();
    eventually("the duplicate is delivered", || async {
        pending(&db).await == 0
    })
    .await;

    // The token made after the reactivation lives; the old one stays
    // revoked; no new event.
    assert_eq!(
        introspect(&env, &new_secret).await.unwrap().api_token_id,
        new
    );
    assert_eq!(
        reason(&introspect(&env, &old_secret).await.unwrap_err()),
        Reason::TokenRevoked
    );
    let events = env.api_token_revocations().await;
    assert_eq!(
        events
            .iter()
            .filter(|(_, u, _)| *u == manager)
            .map(|(t, _, _)| t.clone())
            .collect::<Vec<_>>(),
        vec![old]
    );
}

#[tokio::test]
async fn a_call_another_replica_holds_is_left_alone_until_its_lease_runs_out() {
    let env = Env::new().await;
    let db = Database::connect(&env.database_url).await.unwrap();
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let (_, secret) = env.api_token_with_secret(&manager, &account).await;
    // A call claimed by a replica that died: leased for 3 more seconds.
    let now = tenancy_runtime::clock::SystemClock.now().millis();
    let payload = serde_json::json!({
        "user_id": manager,
        "account_id": account,
        "reason": ipb::RevocationReason::MemberRevoked as i32,
        "change_time": env.clock.now().millis(),
    })
    .to_string();
    let lease = now + 3_000;
    db.execute_unprepared(&format!(
        "INSERT INTO account_peer_calls (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
         VALUES ('held', 1, '{payload}', {now}, 0, {now}, {lease}, '')"
    ))
    .await
    .unwrap();
    // The worker polls every 500 ms: while the lease holds, it does not
    // take the call.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    if tenancy_runtime::clock::SystemClock.now().millis() < lease {
        assert_eq!(pending(&db).await, 1, "taken while another replica held it");
        introspect(&env, &secret).await.unwrap();
    }
    // Then it does, and delivers.
    eventually("the expired lease is taken over", || async {
        pending(&db).await == 0
    })
    .await;
    assert_eq!(
        reason(&introspect(&env, &secret).await.unwrap_err()),
        Reason::TokenRevoked
    );
}
