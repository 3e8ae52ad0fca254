//! Last use of API tokens and sessions, reported by the gateway to identity
//! (issue 14): shown within the promised lag, driving the session idle
//! timeout, and not lost when the gateway stops gracefully.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_proto::account::ListServicesRequest;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{
    ApiToken, CreateApiTokenRequest, GetMeRequest, ListApiTokensRequest, ListSessionsRequest,
    RefreshSessionRequest,
};
use tenancy_runtime::{Clock as _, ManualClock, Reason, SystemClock, Timestamp};
use tonic::Code;

use crate::gateway::{PASSWORD, Parts, Suite, reason, session_of};

/// An account of a new user, the owner's token for it and an API token.
async fn owner_with_api_token(suite: &Suite, email: &str) -> (String, String) {
    let owner = suite.user(email).await;
    let (_, owner) = suite.account_of(&owner).await;
    let secret = suite
        .identity(&owner)
        .create_api_token(CreateApiTokenRequest {
            name: "deploys".into(),
            expire_time: None,
            read_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    (owner, secret)
}

async fn use_api_token(suite: &Suite, secret: &str) {
    suite
        .account(secret)
        .list_services(ListServicesRequest::default())
        .await
        .unwrap();
}

/// The account's API tokens as the owner lists them.
async fn api_tokens(suite: &Suite, owner: &str) -> Vec<ApiToken> {
    suite
        .identity(owner)
        .list_api_tokens(ListApiTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_tokens
}

fn millis(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| Timestamp::from_proto(t).millis())
}

#[tokio::test]
async fn an_api_token_use_shows_in_list_api_tokens_within_a_minute() {
    // The default report interval: what is promised is what is tested.
    let suite = Suite::start(|_| {}).await;
    let (owner, secret) = owner_with_api_token(&suite, "lastuse@example.com").await;
    assert_eq!(api_tokens(&suite, &owner).await[0].last_used_time, None);
    let before = SystemClock.now().millis();
    let used = Instant::now();
    use_api_token(&suite, &secret).await;
    let after = SystemClock.now().millis();
    let token = loop {
        let tokens = api_tokens(&suite, &owner).await;
        if tokens[0].last_used_time.is_some() {
            break tokens.into_iter().next().unwrap();
        }
        assert!(
            used.elapsed() < Duration::from_secs(60),
            "last_used_time not shown within a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let last_used = millis(token.last_used_time.as_ref()).unwrap();
    assert!(
        (before..=after).contains(&last_used),
        "{last_used} not in {before}..={after}"
    );
    assert_eq!(token.last_used_ip_address, "127.0.0.1");
}

#[tokio::test]
async fn activity_keeps_a_session_alive_and_an_unused_one_idles_out() {
    let clock = ManualClock::starting_now();
    let suite = Suite::start_with_clock(Arc::new(clock.clone()), |config| {
        config.auth.session_idle_timeout = Duration::from_secs(10 * 60);
        // Access tokens outlive the idle timeout here, so only reported
        // activity (not refreshing) can keep the session alive.
        config.auth.access_token_lifetime = Duration::from_secs(3600);
        config.gateway.usage_report_interval = Duration::from_millis(100);
    })
    .await;
    suite.user("idle@example.com").await;
    let used = suite.session("idle@example.com", PASSWORD, "").await;
    let unused = suite.session("idle@example.com", PASSWORD, "").await;
    let token = used.access_token.as_ref().unwrap().token.clone();
    // Used every four minutes for twenty: twice the idle timeout.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(4 * 60));
        suite
            .identity(&token)
            .get_me(GetMeRequest::default())
            .await
            .unwrap();
        let now = clock.now().millis();
        let reported = Instant::now();
        loop {
            let sessions = suite
                .identity(&token)
                .list_sessions(ListSessionsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .sessions;
            let this = sessions.iter().find(|s| s.id == used.session_id).unwrap();
            if millis(this.last_seen_time.as_ref()) == Some(now) {
                assert_eq!(
                    millis(this.expire_time.as_ref()),
                    Some(now + 10 * 60 * 1000),
                    "the idle expiry moves with the activity"
                );
                break;
            }
            assert!(
                reported.elapsed() < Duration::from_secs(10),
                "activity never reported: {this:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut anonymous = IdentityServiceClient::new(suite.gateway.clone());
    anonymous
        .refresh_session(RefreshSessionRequest {
            refresh_token: used.refresh_token,
        })
        .await
        .unwrap();
    let status = anonymous
        .refresh_session(RefreshSessionRequest {
            refresh_token: unused.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Unauthenticated, Reason::RefreshTokenInvalid)
    );
}

#[tokio::test]
async fn a_gateway_stopped_gracefully_reports_what_it_saw() {
    // Reports would come only after an hour: only the shutdown sends them.
    let mut parts = Parts::start_with(|config| {
        config.gateway.usage_report_interval = Duration::from_secs(3600);
    })
    .await;
    let suite = parts.suite().await;
    let (owner, secret) = owner_with_api_token(&suite, "shutdown@example.com").await;
    use_api_token(&suite, &secret).await;
    let session = session_of(&owner);
    let before = SystemClock.now().millis();
    suite
        .identity(&owner)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    let seen = SystemClock.now().millis();

    parts.gateway.take().unwrap().stop().await.unwrap();
    parts.start_gateway().await;
    let suite = parts.suite().await;
    let token = &api_tokens(&suite, &owner).await[0];
    assert!(
        millis(token.last_used_time.as_ref()).is_some_and(|t| t <= seen),
        "{token:?}"
    );
    let sessions = suite
        .identity(&owner)
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    let this = sessions.iter().find(|s| s.id == session).unwrap();
    let last_seen = millis(this.last_seen_time.as_ref()).unwrap();
    assert!(
        (before..=seen).contains(&last_seen),
        "the session's last use before the shutdown was reported: {this:?}"
    );
}

#[tokio::test]
async fn the_whole_suite_stopped_gracefully_keeps_what_its_gateway_saw() {
    // In one process the services wait for the gateway to stop, so its
    // last report still finds identity serving.
    let suite = Suite::start(|config| {
        config.gateway.usage_report_interval = Duration::from_secs(3600);
    })
    .await;
    let (owner, secret) = owner_with_api_token(&suite, "suite-stop@example.com").await;
    use_api_token(&suite, &secret).await;
    let (config, database) = (suite.config.clone(), suite.database.clone());
    suite.running.stop().await.unwrap();

    let suite = Suite::start_on(config, database, Arc::new(SystemClock)).await;
    let token = &api_tokens(&suite, &owner).await[0];
    assert!(token.last_used_time.is_some(), "{token:?}");
}
