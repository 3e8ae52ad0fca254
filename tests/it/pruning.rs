//! Issue 20 §3: identity's revocation log stays bounded, and a gateway that
//! fell behind further than the retention rebuilds its state instead of
//! missing what was pruned.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tenancy::{Part, start};
use tenancy_proto::auth::Role;
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::watch_revocations_response::Item;
use tenancy_proto::identity::{
    CreateApiTokenRequest, GetMeRequest, RevokeApiTokenRequest, WatchRevocationsRequest,
};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::tls::Caller as Peer;
use tenancy_runtime::{SystemClock, db};
use tenancy_testkit::{Caller, TestChannel, member};

use crate::gateway::{Parts, claim, refused_within, session_of, user_of};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The positions of the revocation log kept, in order.
async fn kept(database: &sea_orm::DatabaseConnection) -> Vec<i64> {
    db::all(
        database,
        "SELECT position FROM identity_revocations ORDER BY position",
        vec![],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| db::get::<i64>(row, "position").unwrap())
    .collect()
}

/// What a watcher resuming after `from` receives until `caught_up`: `0`
/// for a reset, else event positions, then the caught-up head; the same
/// whether it asks for the catch-up in batches or one event a message.
async fn resume(identity: std::net::SocketAddr, from: i64) -> Vec<i64> {
    let single = resume_as(identity, from, false).await;
    assert_eq!(
        resume_as(identity, from, true).await,
        single,
        "batched and single catch-ups differ"
    );
    single
}

async fn resume_as(identity: std::net::SocketAddr, from: i64, batched: bool) -> Vec<i64> {
    let mut client = IdentityInternalServiceClient::with_interceptor(
        TestChannel::new(Peer::Identity, identity),
        ServiceAuth::new(),
    );
    let mut stream = client
        .watch_revocations(WatchRevocationsRequest {
            from_position: from,
            watcher: "test".into(),
            batched_catch_up: batched,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream went silent")
            .unwrap()
            .unwrap();
        match message.item.unwrap() {
            Item::Reset(_) => seen.push(0),
            Item::Event(event) => seen.push(event.position),
            Item::Batch(batch) => {
                assert!(batched, "a batch not asked for");
                seen.extend(batch.events.iter().map(|e| e.position));
            }
            Item::CaughtUp(caught_up) => {
                seen.push(caught_up.head_position);
                return seen;
            }
            Item::Heartbeat(_) => {}
        }
    }
}

#[tokio::test]
async fn a_gateway_behind_the_pruned_revocation_log_resets_and_refuses_what_it_would_have_missed() {
    let mut parts = Parts::start().await;
    let suite = parts.suite().await;
    let owner = suite.user("pruned@example.com").await;
    let (account, owner) = suite.account_of(&owner).await;
    let mut tokens = Vec::new();
    for name in ["old", "new", "newest"] {
        let created = suite
            .identity(&owner)
            .create_api_token(CreateApiTokenRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Used once: the gateway caches the introspection.
        suite
            .identity(&created.secret)
            .get_me(GetMeRequest::default())
            .await
            .unwrap();
        tokens.push((created.api_token.unwrap().id, created.secret));
    }
    // One revocation the gateway applies: it will resume after it.
    let applied = suite
        .identity(&owner)
        .create_api_token(CreateApiTokenRequest {
            name: "applied".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api_token
        .unwrap()
        .id;
    suite
        .identity(&owner)
        .revoke_api_token(RevokeApiTokenRequest {
            api_token_id: applied,
        })
        .await
        .unwrap();
    let database = sea_orm::Database::connect(&parts.config.identity.database_url.clone().unwrap())
        .await
        .unwrap();
    let behind = db::one(
        &database,
        "SELECT position FROM identity_revocation_head WHERE id = 1",
        vec![],
    )
    .await
    .unwrap()
    .map(|row| db::get::<i64>(&row, "position").unwrap())
    .unwrap();

    // Identity goes away: the gateway stays at `behind`. A replica it does
    // not know (another port, the same database) revokes the three tokens.
    let index = parts
        .services
        .iter()
        .position(|(n, _)| *n == ServiceName::Identity)
        .unwrap();
    let (_, identity) = parts.services.remove(index);
    identity.stop().await.unwrap();
    let mut hidden = parts.config.clone();
    hidden.identity.listen = "127.0.0.1:0".parse().unwrap();
    let other = start(hidden, Part::Identity, Arc::new(SystemClock))
        .await
        .unwrap();
    let mut principal = member(&user_of(&owner), &account, Role::Owner);
    principal.session_id = Some(session_of(&owner));
    assert_eq!(claim(&owner, "acc"), account);
    let mut as_owner = IdentityServiceClient::with_interceptor(
        TestChannel::new(
            Peer::Identity,
            other.service(ServiceName::Identity).unwrap(),
        ),
        Caller::new(principal, Arc::new(SystemClock)),
    );
    for (id, _) in &tokens {
        as_owner
            .revoke_api_token(RevokeApiTokenRequest {
                api_token_id: id.clone(),
            })
            .await
            .unwrap();
    }
    other.stop().await.unwrap();
    // The first revocation (and everything before) is older than the
    // retention (7 days); the other two are new.
    db::exec(
        &database,
        "UPDATE identity_revocations SET create_time = create_time - $1 WHERE position <= $2",
        vec![(8 * DAY_MS).into(), (behind + 1).into()],
    )
    .await
    .unwrap();

    // Identity is back on its address and prunes before it serves: the old
    // entries go, the new ones stay.
    let running = start(parts.config.clone(), Part::Identity, Arc::new(SystemClock))
        .await
        .unwrap();
    let address = running.service(ServiceName::Identity).unwrap();
    parts.services.push((ServiceName::Identity, running));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while kept(&database).await != vec![behind + 2, behind + 3] {
        assert!(
            std::time::Instant::now() < deadline,
            "not pruned: {:?}",
            kept(&database).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A watcher resuming from before the pruned entry gets a reset, then
    // every entry kept; one resuming right before the oldest kept, or from
    // the start, gets no reset.
    assert_eq!(
        resume(address, behind).await,
        vec![0, behind + 2, behind + 3, behind + 3]
    );
    assert_eq!(
        resume(address, behind + 1).await,
        vec![behind + 2, behind + 3, behind + 3]
    );
    assert_eq!(
        resume(address, 0).await,
        vec![behind + 2, behind + 3, behind + 3]
    );

    // The gateway resumed from `behind`: the revocation of the first token
    // was pruned, yet the token is refused (its cached introspection went
    // with the reset), as are the others.
    suite.wait_ready().await;
    for (_, secret) in &tokens {
        let (_, status) =
            refused_within(Duration::from_secs(5), tonic::Code::Unauthenticated, || {
                let mut client = suite.identity(secret);
                async move { client.get_me(GetMeRequest::default()).await }
            })
            .await;
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    // The owner's portal session was never revoked: still served.
    suite
        .identity(&owner)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
}
