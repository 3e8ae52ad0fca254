//! Bearer tokens at the gateway (issue 21 §10): a `tny_` string costs an
//! introspection only when it has the API-token form and checksum, and an
//! address whose introspections keep failing stops costing identity
//! anything; access tokens are checked for `nbf` and their type.

use std::time::Duration;

use tenancy_proto::identity::GetMeRequest;
use tenancy_runtime::Reason;
use tonic_types::StatusExt as _;

use crate::gateway::reason;
use crate::metrics::{scrape, suite_with_metrics_and};

/// Asserts that identity has answered `expected` introspections (polled:
/// a call is counted when its answer has gone out, which may be just
/// after the client saw it).
async fn assert_introspections(metrics: std::net::SocketAddr, expected: f64, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = scrape(metrics).await.sum(
            "grpc_server_handled_total",
            &[("grpc_method", "IntrospectApiToken"), ("part", "identity")],
        );
        if seen == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{why}: {seen} introspections, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tny_string_is_checked_offline_and_failed_introspections_are_limited_per_address() {
    let (suite, metrics) = suite_with_metrics_and(|config| {
        config.gateway.api_token_failure_burst = 3;
        config.gateway.api_token_failures_per_minute = 1;
    })
    .await;
    let owner = suite.user("tokens@example.com").await;
    let (_, owner) = suite.account_of(&owner).await;
    let real = suite.api_token(&owner).await;
    // Used once: cached from now on.
    suite
        .identity(&real)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    assert_introspections(metrics, 1.0, "the real token, once").await;

    // A typo (one character of the checksum changed) and garbage of the
    // right prefix: refused as malformed, identity never asked.
    let mut typo = real.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for garbage in [typo.as_str(), "tny_notarealtoken", &format!("{real}x")] {
        let status = suite
            .identity(garbage)
            .get_me(GetMeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status)),
            (tonic::Code::Unauthenticated, Reason::TokenMalformed),
            "{garbage}"
        );
        assert!(!status.message().contains(garbage), "{status:?}");
    }
    assert_introspections(metrics, 1.0, "strings without the checksum").await;

    // Well-formed guesses: each costs one introspection until the
    // address's failures are spent (burst 3, and the one that spends it).
    for _ in 0..4 {
        let guess = tenancy_runtime::api_token::generate();
        let status = suite
            .identity(&guess)
            .get_me(GetMeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status)),
            (tonic::Code::Unauthenticated, Reason::TokenInvalid)
        );
    }
    assert_introspections(metrics, 5.0, "four guesses").await;
    // Then further guesses are refused without asking identity.
    for _ in 0..5 {
        let status = suite
            .identity(&tenancy_runtime::api_token::generate())
            .get_me(GetMeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status)),
            (tonic::Code::ResourceExhausted, Reason::RateLimited)
        );
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert!(retry.retry_delay.unwrap() > Duration::ZERO);
    }
    assert_introspections(metrics, 5.0, "guesses from a blocked address").await;
    assert!(
        scrape(metrics).await.sum(
            "tenancy_gateway_rate_limited_total",
            &[("limit", "api_token_failures")]
        ) >= 5.0
    );
    // The cached real token still works from the blocked address, and the
    // portal session too.
    suite
        .identity(&real)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    suite
        .identity(&owner)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    assert_introspections(metrics, 5.0, "in the end").await;
}

/// The header and the claims of a JWT, unverified.
fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let decode = |part: &str| -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let mut parts = token.split('.');
    (decode(parts.next().unwrap()), decode(parts.next().unwrap()))
}

#[tokio::test]
async fn an_access_token_before_its_nbf_is_refused() {
    use tenancy_runtime::{Clock as _, ManualClock, SystemClock, Timestamp};
    // The gateway checks `nbf` against its own clock: a token issued at T
    // is not valid yet where the time reads T - 10 min.
    let clock = std::sync::Arc::new(ManualClock::new(Timestamp(SystemClock.now().millis())));
    let suite = crate::gateway::Suite::start_with_clock(clock.clone(), |_| {}).await;
    let token = suite.user("early@example.com").await;
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["nbf"], claims["iat"], "{claims}");
    clock.set(Timestamp(clock.now().millis() - 600_000));
    let status = suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (tonic::Code::Unauthenticated, Reason::TokenNotYetValid)
    );
    // Within the leeway it is accepted.
    clock.set(Timestamp(clock.now().millis() + 600_000 - 20_000));
    suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn only_a_jwt_typed_as_an_access_token_authenticates() {
    use base64::Engine as _;
    let suite = crate::gateway::Suite::start(|_| {}).await;
    let token = suite.user("typed@example.com").await;
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(claims["kind"], "portal", "{claims}");
    suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    // The same token presented as another type of JWT.
    let (_, rest) = token.split_once('.').unwrap();
    for typ in ["id+jwt", "JWT+refresh", ""] {
        let mut retyped = header.clone();
        if typ.is_empty() {
            retyped.as_object_mut().unwrap().remove("typ");
        } else {
            retyped["typ"] = typ.into();
        }
        let retyped = format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(retyped.to_string())
        );
        let status = suite
            .identity(&retyped)
            .get_me(GetMeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status)),
            (tonic::Code::Unauthenticated, Reason::TokenTypeInvalid),
            "typ {typ:?}"
        );
    }
}
