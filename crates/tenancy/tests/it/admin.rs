//! `tenancy admin principal --service NAME`: what it prints is accepted by
//! a real service for an INTERNAL method, and refused once expired or
//! changed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tenancy::{Part, start};
use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::account::{RegisterServiceRequest, Service};
use tenancy_runtime::ManualClock;
use tenancy_runtime::Reason;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::principal::{PRINCIPAL_HEADER, SIGNATURE_HEADER};
use tenancy_testkit::{Caller, Role, TestDatabase, member, new_account, test_config};
use tonic::transport::Channel;

/// Runs `tenancy admin principal ARGS` with the tests' principal key and
/// returns its two printed metadata entries.
fn admin_principal(args: &[&str]) -> Vec<(String, String)> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["admin", "principal"])
        .args(args)
        .env("TENANCY_PRINCIPAL_KEY", "11".repeat(32))
        .env(
            "TENANCY_DATA_DIR",
            std::env::temp_dir().join("tenancy-admin-test"),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.split_once(": ").unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// A RegisterService request carrying `entries` as its metadata, as grpcurl
/// `-H "key: value"` sends them (a `-bin` value is base64).
fn register(
    account_id: &str,
    entries: &[(String, String)],
) -> tonic::Request<RegisterServiceRequest> {
    let mut request = tonic::Request::new(RegisterServiceRequest {
        service: Some(Service {
            account_id: account_id.to_owned(),
            kind: "vps".into(),
            name: "web-1".into(),
            external_id: format!("order-{}", tenancy_runtime::ids::new_id()),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    for (key, value) in entries {
        if key == PRINCIPAL_HEADER {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(value.trim_end_matches('='))
                .unwrap();
            request.metadata_mut().insert_bin(
                PRINCIPAL_HEADER,
                tonic::metadata::MetadataValue::from_bytes(&bytes),
            );
        } else {
            request
                .metadata_mut()
                .insert(SIGNATURE_HEADER, value.parse().unwrap());
        }
    }
    request
}

async fn channel(address: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_service_principal_from_the_cli_calls_an_internal_method_until_it_expires() {
    let db = TestDatabase::new("admin").await;
    let clock = ManualClock::starting_now();
    let running = start(test_config(&db), Part::All, Arc::new(clock.clone()))
        .await
        .unwrap();
    let account_address = running.service(ServiceName::Account).unwrap();
    let owner = tenancy_runtime::ids::new_id();
    let account = AccountServiceClient::with_interceptor(
        channel(account_address).await,
        Caller::new(
            member(&owner, "", Role::Unspecified),
            Arc::new(clock.clone()),
        ),
    )
    .create_account(new_account())
    .await
    .unwrap()
    .into_inner()
    .account
    .unwrap();
    let mut internal = AccountInternalServiceClient::new(channel(account_address).await);

    let signed_at = tenancy_runtime::Clock::now(&tenancy_runtime::SystemClock);
    let billing = admin_principal(&["--service", "billing"]);
    assert_eq!(
        billing.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [PRINCIPAL_HEADER, SIGNATURE_HEADER]
    );
    let registered = internal
        .register_service(register(&account.id, &billing))
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(registered.account_id, account.id);

    // A portal user's principal is refused by the same INTERNAL method.
    let user = admin_principal(&[
        "--user-id",
        &owner,
        "--account-id",
        &account.id,
        "--role",
        "owner",
    ]);
    let status = internal
        .register_service(register(&account.id, &user))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        tenancy_testkit::refusal(&status),
        Reason::MethodInternalOnly
    );

    // Changed after signing: refused.
    let mut tampered = billing.clone();
    let (_, value) = &mut tampered[0];
    let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(value.trim_end_matches('='))
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    *value = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let status = internal
        .register_service(register(&account.id, &tampered))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(tenancy_testkit::refusal(&status), Reason::PrincipalInvalid);
    assert!(status.message().contains("does not match"), "{status:?}");

    // The printed principal is valid 60 s: just before, accepted; after,
    // refused.
    clock.set(signed_at.plus(Duration::from_secs(59)));
    internal
        .register_service(register(&account.id, &billing))
        .await
        .unwrap();
    clock.set(signed_at.plus(Duration::from_secs(70)));
    let status = internal
        .register_service(register(&account.id, &billing))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(tenancy_testkit::refusal(&status), Reason::PrincipalInvalid);
    assert!(status.message().contains("expired"), "{status:?}");
    running.stop().await.unwrap();
}

#[test]
fn a_service_name_is_required_to_be_short_and_plain_and_excludes_a_user() {
    for args in [
        &["--service", ""][..],
        &["--service", "Billing Team"],
        &["--service", "billing", "--user-id", "u-1"],
        &["--service", "billing", "--role", "owner"],
        &[],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
            .args(["admin", "principal"])
            .args(args)
            .env("TENANCY_PRINCIPAL_KEY", "11".repeat(32))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(output.stdout.is_empty(), "{args:?} printed a principal");
    }
}
