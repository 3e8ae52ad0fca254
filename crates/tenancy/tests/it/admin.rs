//! `tenancy admin principal --method M --user-id U …`: what it prints is
//! accepted by a real service, over the operator's certificate, for one call
//! of that method only, and refused once used, expired or changed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tenancy::{Part, start};
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::account::{GetAccountRequest, ListMembersRequest};
use tenancy_runtime::ManualClock;
use tenancy_runtime::Reason;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::principal::{PRINCIPAL_HEADER, SIGNATURE_HEADER};
use tenancy_runtime::tls::Caller as Peer;
use tenancy_testkit::{Caller, Role, TestChannel, TestDatabase, member, new_account, test_config};

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

/// `message` carrying `entries` as its metadata, as grpcurl `-H "key:
/// value"` sends them (a `-bin` value is base64).
fn with_entries<T>(message: T, entries: &[(String, String)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
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

const GET_ACCOUNT: &str = "/tenancy.account.v1.AccountService/GetAccount";

#[tokio::test]
async fn a_principal_from_the_cli_is_good_for_one_call_of_its_method_until_it_expires() {
    let db = TestDatabase::new("admin").await;
    let clock = ManualClock::starting_now();
    let running = start(test_config(&db), Part::All, Arc::new(clock.clone()))
        .await
        .unwrap();
    let account_service = TestChannel::new(
        Peer::Account,
        running.service(ServiceName::Account).unwrap(),
    );
    let owner = tenancy_runtime::ids::new_id();
    let account = AccountServiceClient::with_interceptor(
        account_service.clone(),
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
    // grpcurl with the operator's certificate, the printed entries as -H.
    let mut operator = AccountServiceClient::new(account_service.as_caller(Peer::Operator));
    let as_owner = |method: &str| {
        admin_principal(&[
            "--method",
            method,
            "--user-id",
            &owner,
            "--account-id",
            &account.id,
            "--role",
            "owner",
        ])
    };

    let signed_at = tenancy_runtime::Clock::now(&tenancy_runtime::SystemClock);
    let principal = as_owner(GET_ACCOUNT);
    assert_eq!(
        principal
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        [PRINCIPAL_HEADER, SIGNATURE_HEADER]
    );
    let got = operator
        .get_account(with_entries(GetAccountRequest::default(), &principal))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.account.unwrap().id, account.id);

    // Once only, and for its method only.
    let status = operator
        .get_account(with_entries(GetAccountRequest::default(), &principal))
        .await
        .unwrap_err();
    assert_eq!(tenancy_testkit::refusal(&status), Reason::PrincipalReplayed);
    let status = operator
        .list_members(with_entries(
            ListMembersRequest::default(),
            &as_owner(GET_ACCOUNT),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        tenancy_testkit::refusal(&status),
        Reason::PrincipalWrongMethod
    );

    // Changed after signing: refused.
    let mut tampered = as_owner(GET_ACCOUNT);
    let (_, value) = &mut tampered[0];
    let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(value.trim_end_matches('='))
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    *value = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let status = operator
        .get_account(with_entries(GetAccountRequest::default(), &tampered))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(tenancy_testkit::refusal(&status), Reason::PrincipalInvalid);
    assert!(status.message().contains("does not match"), "{status:?}");

    // The printed principal is valid 60 s: just before, accepted; after,
    // refused.
    let fresh = as_owner(GET_ACCOUNT);
    let later = as_owner(GET_ACCOUNT);
    clock.set(signed_at.plus(Duration::from_secs(59)));
    operator
        .get_account(with_entries(GetAccountRequest::default(), &fresh))
        .await
        .unwrap();
    clock.set(signed_at.plus(Duration::from_secs(70)));
    let status = operator
        .get_account(with_entries(GetAccountRequest::default(), &later))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(tenancy_testkit::refusal(&status), Reason::PrincipalInvalid);
    assert!(status.message().contains("expired"), "{status:?}");
    running.stop().await.unwrap();
}

#[test]
fn a_principal_needs_a_method_and_a_user() {
    for args in [
        &["--user-id", "u-1"][..],
        &["--method", GET_ACCOUNT],
        &[
            "--method",
            GET_ACCOUNT,
            "--user-id",
            "u-1",
            "--role",
            "admin",
        ],
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
