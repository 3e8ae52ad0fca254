//! The account's SSH public keys. Fixture keys were made with `ssh-keygen`,
//! and the expected fingerprints are what `ssh-keygen -lf` printed.

use std::time::Duration;

use base64::Engine as _;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;
use tenancy_testkit::{Role, TokenKind};

use crate::harness::{Env, reason};

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAa0v3QhULbRaq7nCkb7w4PcOzgT1J2dnvmmV+wIUYQW alice@laptop";
const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJQGjfZOYL6zg1IuWFWYzIvkkz6vuq1E4lQ6wOVCjK9jvSeNHx9bBiriqGzUTdWmGO1+/agEZ6RqztYxXX7xIdw=";
const P384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBH8wMUQfjK/1WXDy8ez8zdpaBTRuQ40mAsrVIW/Ug2o73if3NZs5t1EE5AHCQyLRuESTTUHI9/09OP0Eoaa8ouPeK4c62wOlHAufo7KK784gnANwi/JtRdgEylQVZU6YIQ== ci";
const RSA2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCx4lqA4Fl3d83imhNhCfZIlcSk1g64UtzZmPFT/tbQNerMAWixMfz6WYMSef9gW0vb3eCrs3LFoQGVarc8tNIeUBwJtfqoJuHRDJYr11jxXMMpi10kTBsDYazjeD2ItYspdOO1xKR5hsiNRwR9ReiaQJCse0jMuuiydBW7tSlXU4oIyH4XZNDe79ZP5MZmf1eDAtpQ19ryGePaDx3Fm9kXZ+0fw6Igh8TwO7dZpIcQQjrdVnucspOt9owxzBJvoNGgOdvw2UW2MQISwMLNtiAFXmnOwunjMqMfYqt738xpt1sfenGSmeXbVEwe9+3PRt18rIR996XP090ulmBhglf9 rsa2048";
const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCXeRUHfngaVzZm++26o3uKH+dryw7IkYyyrX5mmfnx5mzmO3TqO8dJxH5Ri9lXKNUURfaWIyjL21Zi0KBM9Bv8OeXTl6CtD8wAJVf/WYLyLVxf9me7A3NZx2tJyGz4VOmzXUTrIsMEMl9QfXsjRj3DcK6V0O+pHRWZXb0bzrZVmQ== weak";
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBALkhq13Rs5VpAVuUL66eafLOZUCuwm+OcIVAVjn0uHQpR0hca+OBMCDqnU2kXuCyp0CRO5yevx+y98VeGuLHmHl/7U7mQ78H35N9aUL+G8L2HOWTh8dw6tUGpwDPgVAqO7bYm/NdKhMjNDBELEWF3MPq4VukoCTHT68b8TGJW7izAAAAFQDm3XWD/8rHDqhZsgATqzhVrOcAWQAAAIEAt8K/5WAihrKiXz3+kXBeFPqPA/fPS13uzad9YpMfONPdRRe+X9zVGqWG0yhIHe12JdzaklcWQKxZtsOVjK7igSKkLKJM4P2lp4unQmmYLVwuExHNepPn3fTgLH7++/6IyKwSgRfdVXB3GW3eTWGIN4CYzMdADW1BDzgt8HS28x4AAACAdtPiRVCtoPxvBfOK6nO2KFjHKVsU0ia3Br2xMUuQupBy4ZXy/RZZ8u0WaL5X3/MRmtBcIJGhnnqoFFAYfY1jg6e4HibEOL4OXrkgoqG4xLTnOmUTzY66wK41iV0O66IMMRnASMJvfg4xXS+EqCwxALvAcj9HwXbndPMJyk5+lGk= root@vm";
const PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";

fn portal(user: &str, session: &str, account: &str, role: Role) -> tenancy_runtime::Principal {
    tenancy_runtime::Principal {
        user_id: Some(user.into()),
        account_id: Some(account.into()),
        role,
        session_id: Some(session.into()),
        token_kind: TokenKind::Portal,
        client_ip: Some("198.51.100.7".parse().unwrap()),
        request_id: "r".into(),
        ..tenancy_runtime::Principal::default()
    }
}

/// An owner with a fresh portal session in a new account.
async fn owner(env: &Env, email: &str) -> (String, String, crate::harness::Public) {
    let user = env.verified_user(email).await;
    let s = env.login(email).await;
    let account = uuid::Uuid::now_v7().to_string();
    let c = env.as_principal(portal(&user, &s.session_id, &account, Role::Owner));
    (user, account, c)
}

fn add(name: &str, key: &str) -> AddSshKeyRequest {
    AddSshKeyRequest {
        name: name.into(),
        public_key: key.into(),
    }
}

/// A distinct valid ed25519 public-key line for each `i`.
fn generated_key(i: u8) -> String {
    let public = ed25519_dalek::SigningKey::from_bytes(&[i; 32]).verifying_key();
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), public.as_bytes().as_slice()] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

#[tokio::test]
async fn keys_of_every_accepted_algorithm_get_the_ssh_keygen_fingerprint() {
    let env = Env::start("sshalgos").await;
    let (user, account, mut c) = owner(&env, "sam@example.com").await;
    let cases = [
        (
            ED25519,
            SshKeyAlgorithm::Ed25519,
            256,
            "SHA256:sSjJzsm1dw8U7XGiWqoUgkQwv+xWclC5um+F4GgzZnA",
            "alice@laptop",
        ),
        (
            P256,
            SshKeyAlgorithm::EcdsaP256,
            256,
            "SHA256:bxBvPBxbOLKhxFTsLkI5v8CQt9togrZnDJOOtWNjLHM",
            "",
        ),
        (
            P384,
            SshKeyAlgorithm::EcdsaP384,
            384,
            "SHA256:nT1yxx+Flr18ct3KSiIPNpNdUit0LjaznmOzFCcQnFA",
            "ci",
        ),
        (
            RSA2048,
            SshKeyAlgorithm::Rsa,
            2048,
            "SHA256:7rCrLOgCqw7YL+hcku884rDX8qaAWLvKfB6SufbNChI",
            "rsa2048",
        ),
    ];
    for (line, algorithm, bits, fingerprint, comment) in cases {
        // Surrounding white space and a trailing newline are ignored.
        let key = c
            .add_ssh_key(add(" laptop ", &format!("  {line}\n")))
            .await
            .unwrap()
            .into_inner()
            .ssh_key
            .unwrap();
        assert_eq!(key.fingerprint, fingerprint);
        assert_eq!(key.algorithm, algorithm as i32);
        assert_eq!(key.bits, bits);
        assert_eq!(key.comment, comment);
        assert_eq!(key.public_key, line.trim_end());
        assert_eq!(key.name, "laptop");
        assert_eq!(key.account_id, account);
        assert_eq!(key.created_by_user_id, user);
        env.advance(Duration::from_millis(1));
    }
    // Newest first, two per page, and the token works only for this list.
    let page = |page_token: String| ListSshKeysRequest {
        page_size: 2,
        page_token,
    };
    let first = c
        .list_ssh_keys(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let second = c
        .list_ssh_keys(page(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    let algorithms: Vec<i32> = first
        .ssh_keys
        .iter()
        .chain(&second.ssh_keys)
        .map(|k| k.algorithm)
        .collect();
    assert_eq!(
        algorithms,
        [
            SshKeyAlgorithm::Rsa as i32,
            SshKeyAlgorithm::EcdsaP384 as i32,
            SshKeyAlgorithm::EcdsaP256 as i32,
            SshKeyAlgorithm::Ed25519 as i32
        ]
    );
    assert!(second.next_page_token.is_empty());
    let (_, _, mut other) = owner(&env, "sue@example.com").await;
    let e = other
        .list_ssh_keys(page(first.next_page_token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        other
            .list_ssh_keys(page(String::new()))
            .await
            .unwrap()
            .into_inner()
            .ssh_keys
            .is_empty()
    );
}

#[tokio::test]
async fn weak_malformed_private_and_dsa_keys_are_refused_on_the_field() {
    let env = Env::start("sshbad").await;
    let (_, _, mut c) = owner(&env, "tom@example.com").await;
    let cases = [
        (RSA1024, Reason::SshKeyTooWeak),
        (DSA, Reason::SshKeyAlgorithmUnsupported),
        (PRIVATE, Reason::SshKeyIsPrivate),
        ("ssh-ed25519 AAAA", Reason::SshKeyMalformed),
        ("hello world", Reason::SshKeyMalformed),
        ("", Reason::SshKeyMalformed),
    ];
    for (text, want) in cases {
        let e = c.add_ssh_key(add("k", text)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{text}");
        assert_eq!(reason(&e), want, "{text}");
        let details = tonic_types::StatusExt::get_error_details(&e);
        let bad = details.bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "public_key");
        assert!(!e.message().contains("b3BlbnNzaC1rZXkt"));
    }
    let e = c.add_ssh_key(add("  ", ED25519)).await.unwrap_err();
    assert_eq!(reason(&e), Reason::NameInvalid);
    assert!(
        c.list_ssh_keys(ListSshKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .ssh_keys
            .is_empty()
    );
}

#[tokio::test]
async fn a_key_is_registered_once_per_account() {
    let env = Env::start("sshdup").await;
    let (_, _, mut c) = owner(&env, "uma@example.com").await;
    c.add_ssh_key(add("first", ED25519)).await.unwrap();
    // The same key with another comment has the same fingerprint.
    let again = ED25519.replace("alice@laptop", "alice@desktop");
    let e = c.add_ssh_key(add("second", &again)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert_eq!(reason(&e), Reason::SshKeyExists);
    // Another account may register it too.
    let (_, _, mut other) = owner(&env, "una@example.com").await;
    other.add_ssh_key(add("mine", ED25519)).await.unwrap();
}

#[tokio::test]
async fn an_account_holds_at_most_100_keys() {
    let env = Env::start("sshlimit").await;
    let (_, _, mut c) = owner(&env, "val@example.com").await;
    for i in 0..100 {
        c.add_ssh_key(add("k", &generated_key(i))).await.unwrap();
    }
    let e = c
        .add_ssh_key(add("k", &generated_key(100)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&e), Reason::SshKeyLimitReached);
}

#[tokio::test]
async fn keys_are_deleted_only_in_their_own_account() {
    let env = Env::start("sshdelete").await;
    let (_, _, mut c) = owner(&env, "wes@example.com").await;
    let key = c
        .add_ssh_key(add("k", ED25519))
        .await
        .unwrap()
        .into_inner()
        .ssh_key
        .unwrap();
    let (_, _, mut other) = owner(&env, "wyn@example.com").await;
    let delete = || DeleteSshKeyRequest {
        ssh_key_id: key.id.clone(),
    };
    let e = other.delete_ssh_key(delete()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(reason(&e), Reason::SshKeyNotFound);
    c.delete_ssh_key(delete()).await.unwrap();
    let e = c.delete_ssh_key(delete()).await.unwrap_err();
    assert_eq!(reason(&e), Reason::SshKeyNotFound);
    assert!(
        c.list_ssh_keys(ListSshKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .ssh_keys
            .is_empty()
    );
    // Once deleted, the key can be added again.
    c.add_ssh_key(add("k", ED25519)).await.unwrap();
}

#[tokio::test]
async fn key_changes_need_a_recent_portal_login_but_listing_does_not() {
    let env = Env::start("sshreauth").await;
    let (user, account, mut c) = owner(&env, "xia@example.com").await;
    let key = c
        .add_ssh_key(add("k", ED25519))
        .await
        .unwrap()
        .into_inner()
        .ssh_key
        .unwrap();
    // An API token cannot change keys, even an owner's.
    let mut api = env.as_principal(tenancy_runtime::Principal {
        user_id: Some(user.clone()),
        account_id: Some(account.clone()),
        role: Role::Owner,
        api_token_id: Some(uuid::Uuid::now_v7().to_string()),
        token_kind: TokenKind::Api,
        request_id: "r".into(),
        ..tenancy_runtime::Principal::default()
    });
    let e = api.add_ssh_key(add("k", P256)).await.unwrap_err();
    assert_eq!(reason(&e), Reason::PortalSessionRequired);
    assert_eq!(
        api.list_ssh_keys(ListSshKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .ssh_keys
            .len(),
        1
    );
    env.advance(Duration::from_secs(15 * 60 + 1));
    let e = c.add_ssh_key(add("k", P256)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&e), Reason::ReauthRequired);
    let e = c
        .delete_ssh_key(DeleteSshKeyRequest {
            ssh_key_id: key.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ReauthRequired);
    assert_eq!(
        c.list_ssh_keys(ListSshKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .ssh_keys
            .len(),
        1
    );
    c.reauthenticate(ReauthenticateRequest {
        password: crate::harness::PASSWORD.into(),
        second_factor: None,
    })
    .await
    .unwrap();
    c.add_ssh_key(add("k", P256)).await.unwrap();
}

#[tokio::test]
async fn managers_list_keys_but_only_owners_change_them() {
    let env = Env::start("sshroles").await;
    let (_, account, mut o) = owner(&env, "yan@example.com").await;
    o.add_ssh_key(add("k", ED25519)).await.unwrap();
    let manager = env.verified_user("yul@example.com").await;
    let s = env.login("yul@example.com").await;
    let mut m = env.as_principal(portal(&manager, &s.session_id, &account, Role::Manager));
    assert_eq!(
        m.list_ssh_keys(ListSshKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .ssh_keys
            .len(),
        1
    );
    let e = m.add_ssh_key(add("k", P256)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason(&e), Reason::RoleTooLow);
}
