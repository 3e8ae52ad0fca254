use std::time::Duration;

use tenancy_proto::account as pb;
use tenancy_proto::account::watch_policies_response::Event;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::Reason;
use tenancy_testkit::Role;
use tonic::Code;

use crate::{Env, mask, reason};

fn settings(list: &[&str]) -> pb::UpdateSecuritySettingsRequest {
    pb::UpdateSecuritySettingsRequest {
        settings: Some(pb::SecuritySettings {
            ip_allowlist: list.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }),
        update_mask: mask(&["ip_allowlist"]),
        force: false,
    }
}

fn mfa(on: bool, grace_secs: i64) -> pb::UpdateSecuritySettingsRequest {
    pb::UpdateSecuritySettingsRequest {
        settings: Some(pb::SecuritySettings {
            enforce_mfa: on,
            mfa_grace_period: Some(prost_types::Duration {
                seconds: grace_secs,
                nanos: 0,
            }),
            ..Default::default()
        }),
        update_mask: mask(&["enforce_mfa", "mfa_grace_period"]),
        force: false,
    }
}

#[tokio::test]
async fn the_allowlist_is_normalised_and_deduplicated() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let s = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(settings(&[
            "203.0.113.9/24",
            "2001:DB8::1/32",
            "203.0.113.0/24",
            "::ffff:198.51.100.7",
        ]))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(
        s.ip_allowlist,
        ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    );
    let got = env
        .as_member(&owner, &account, Role::Owner)
        .get_security_settings(pb::GetSecuritySettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(got.client_ip_allowed);
    assert_eq!(got.client_ip, "203.0.113.7");
}

#[tokio::test]
async fn invalid_cidrs_are_refused_with_their_index_and_long_lists_too() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(settings(&["203.0.113.0/24", "banana", "10.0.0.0/33"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(reason(&e), Reason::CidrInvalid);
    assert_eq!(
        crate::fields(&e),
        ["settings.ip_allowlist[1]", "settings.ip_allowlist[2]"]
    );
    let many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(settings(&refs))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::AllowlistTooLong);
}

#[tokio::test]
async fn an_allowlist_shutting_out_the_callers_address_needs_force() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(settings(&["10.0.0.0/8"]))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::SelfLockout);
    let mut forced = settings(&["10.0.0.0/8"]);
    forced.force = true;
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(forced)
        .await
        .unwrap();
    let got = env
        .as_member(&owner, &account, Role::Owner)
        .get_security_settings(pb::GetSecuritySettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!got.client_ip_allowed);
}

#[tokio::test]
async fn security_settings_need_a_recent_authentication_and_an_owner() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let mut stale = env.principal(&owner, &account, Role::Owner);
    stale.auth_time = Some(stale.auth_time.unwrap() - 3600);
    let e = env
        .client(stale)
        .update_security_settings(settings(&[]))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ReauthRequired);
    let e = env
        .as_member(&manager, &account, Role::Manager)
        .update_security_settings(settings(&[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Managers may read them.
    env.as_member(&manager, &account, Role::Manager)
        .get_security_settings(pb::GetSecuritySettingsRequest {})
        .await
        .unwrap();
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 31 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(crate::fields(&e).contains(&"settings.mfa_grace_period".to_owned()));
}

#[tokio::test]
async fn enforcing_2fa_gives_personal_deadlines_never_extended_and_shortened_when_tightened() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let day = 24 * 3600;
    let start = tenancy_runtime::Clock::now(&env.clock).seconds();
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 10 * day))
        .await
        .unwrap();
    let deadline = |env: &Env| {
        let c = env.as_member(&owner, &account, Role::Owner);
        let manager = manager.clone();
        async move {
            c.clone()
                .get_member(pb::GetMemberRequest { user_id: manager })
                .await
                .unwrap()
                .into_inner()
                .member
                .unwrap()
                .mfa_deadline
                .map(|t| t.seconds)
        }
    };
    assert_eq!(deadline(&env).await, Some(start + 10 * day));
    // Re-saving later does not extend it.
    env.clock.advance(Duration::from_secs(2 * day as u64));
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 10 * day))
        .await
        .unwrap();
    assert_eq!(deadline(&env).await, Some(start + 10 * day));
    // Tightening shortens it.
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 5 * day))
        .await
        .unwrap();
    assert_eq!(deadline(&env).await, Some(start + 5 * day));
    // Loosening again does not extend it, and gateways are sent every
    // member's personal deadline again.
    let mut watch = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while !matches!(next_event(&mut watch).await, Event::CaughtUp(_)) {}
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 20 * day))
        .await
        .unwrap();
    assert_eq!(deadline(&env).await, Some(start + 5 * day));
    let sent = loop {
        if let Event::MembershipChanged(m) = next_event(&mut watch).await
            && m.user_id == manager
        {
            break m;
        }
    };
    assert_eq!(sent.mfa_deadline.map(|t| t.seconds), Some(start + 5 * day));
    // The gateway's view carries it too.
    let state = env
        .internal()
        .get_principal_state(pb::GetPrincipalStateRequest {
            user_id: manager.clone(),
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.mfa_deadline.map(|t| t.seconds), Some(start + 5 * day));
    assert!(state.security_settings.unwrap().enforce_mfa);
    // ListMembers shows the same personal deadline.
    assert_eq!(
        listed_deadline(&env, &account, &owner, &manager).await,
        Some(start + 5 * day)
    );
    // Members with 2FA show no deadline.
    let email = env.identity_user(&manager).await.email;
    env.enrol_totp(&manager, &email).await;
    assert_eq!(deadline(&env).await, None);
}

async fn next_event(stream: &mut tonic::Streaming<pb::WatchPoliciesResponse>) -> Event {
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_stream::StreamExt::next(stream),
    )
    .await
    .expect("an event in time")
    .expect("stream open")
    .expect("an event")
    .event
    .expect("event set")
}

async fn listed_deadline(env: &Env, account: &str, owner: &str, user: &str) -> Option<i64> {
    env.as_member(owner, account, Role::Owner)
        .list_members(pb::ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members
        .into_iter()
        .find(|m| m.user_id == user)
        .expect("listed")
        .mfa_deadline
        .map(|t| t.seconds)
}

#[tokio::test]
async fn past_the_2fa_deadline_a_member_stays_a_member_until_they_enrol() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let day = 24 * 3600;
    let start = tenancy_runtime::Clock::now(&env.clock).seconds();
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 2 * day))
        .await
        .unwrap();
    // Someone joining later counts from their join time.
    env.clock.advance(Duration::from_secs(day as u64));
    let late = env.manager(&account, &owner).await;
    assert_eq!(
        listed_deadline(&env, &account, &owner, &late).await,
        Some(start + 3 * day)
    );
    // Past the deadline (and past the reminder job's runs): still an ACTIVE
    // member, the past deadline still shown, and handed to the gateway,
    // which limits them to enrolment.
    env.clock.advance(Duration::from_secs(5 * day as u64));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let member = env.member(&owner, &account, &manager).await;
    assert_eq!(member.status, pb::MemberStatus::Active as i32);
    assert_eq!(
        member.mfa_deadline.map(|t| t.seconds),
        Some(start + 2 * day)
    );
    let state = env
        .internal()
        .get_principal_state(pb::GetPrincipalStateRequest {
            user_id: manager.clone(),
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state.membership.unwrap().status,
        pb::MemberStatus::Active as i32
    );
    assert_eq!(state.mfa_deadline.map(|t| t.seconds), Some(start + 2 * day));
    // Enrolling lifts it.
    let email = env.identity_user(&manager).await.email;
    env.enrol_totp(&manager, &email).await;
    assert_eq!(
        listed_deadline(&env, &account, &owner, &manager).await,
        None
    );
}

#[tokio::test]
async fn members_without_2fa_are_reminded_by_email_before_their_deadline() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let email = env.identity_user(&manager).await.email;
    env.as_member(&owner, &account, Role::Owner)
        .update_security_settings(mfa(true, 10 * 24 * 3600))
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(8 * 24 * 3600));
    // The reminder job wakes every second; on a loaded CI machine one pass
    // (identity lookup, contacts send) can take several, so allow 30 s.
    let mut reminded = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < until {
        reminded = env
            .outbox(&email, MessageTemplate::TwoFactorDeadlineReminder)
            .await;
        if !reminded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reminded.len(), 1);
    assert!(reminded[0].template_data.contains_key("deadline_time"));
}

#[tokio::test]
async fn support_access_is_granted_for_at_most_30_days_and_can_be_revoked() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let c = env.as_member(&owner, &account, Role::Owner);
    let ttl = |days: i64| pb::GrantSupportAccessRequest {
        expiration: Some(pb::grant_support_access_request::Expiration::Ttl(
            prost_types::Duration {
                seconds: days * 24 * 3600,
                nanos: 0,
            },
        )),
        note: "ticket 1".into(),
    };
    let e = c.clone().grant_support_access(ttl(31)).await.unwrap_err();
    assert!(crate::fields(&e).contains(&"ttl".to_owned()));
    let grant = c
        .clone()
        .grant_support_access(ttl(2))
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap();
    assert!(grant.active);
    let check = env
        .internal()
        .check_support_access(pb::CheckSupportAccessRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(check.active);
    let listed = env
        .internal()
        .list_active_support_access_grants(pb::ListActiveSupportAccessGrantsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(listed.len(), 1);
    let revoked = c
        .clone()
        .revoke_support_access(pb::RevokeSupportAccessRequest {})
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap();
    assert!(!revoked.active);
    let check = env
        .internal()
        .check_support_access(pb::CheckSupportAccessRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!check.active);
    // Expiry ends it by itself.
    c.clone().grant_support_access(ttl(1)).await.unwrap();
    env.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let check = env
        .internal()
        .check_support_access(pb::CheckSupportAccessRequest {
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!check.active);
    let e = env
        .internal()
        .check_support_access(pb::CheckSupportAccessRequest {
            account_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::AccountNotFound);
}

fn delivery(method: pb::ServerCredentialDelivery) -> pb::UpdateSecuritySettingsRequest {
    pb::UpdateSecuritySettingsRequest {
        settings: Some(pb::SecuritySettings {
            server_credential_delivery: method as i32,
            ..Default::default()
        }),
        update_mask: mask(&["server_credential_delivery"]),
        force: false,
    }
}

/// Issue 17 §2: the account's default delivery of new servers' root
/// passwords is NONE until an owner changes it; every member reads it, a
/// manager cannot change it, an unknown method is refused naming the field,
/// and the change is audited.
#[tokio::test]
async fn credential_delivery_is_read_by_members_changed_by_owners_and_audited() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let read = |user: &str, role| {
        let client = env.as_member(user, &account, role);
        async move {
            let mut client = client;
            client
                .get_security_settings(pb::GetSecuritySettingsRequest {})
                .await
                .unwrap()
                .into_inner()
                .settings
                .unwrap()
                .server_credential_delivery
        }
    };
    assert_eq!(
        read(&manager, Role::Manager).await,
        pb::ServerCredentialDelivery::None as i32
    );
    let e = env
        .as_member(&manager, &account, Role::Manager)
        .update_security_settings(delivery(pb::ServerCredentialDelivery::Email))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(delivery(pb::ServerCredentialDelivery::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(reason(&e), Reason::FieldInvalid);
    assert_eq!(
        read(&manager, Role::Manager).await,
        pb::ServerCredentialDelivery::None as i32
    );
    let s = env
        .as_member(&owner, &account, Role::Owner)
        .update_security_settings(delivery(pb::ServerCredentialDelivery::Sms))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(
        s.server_credential_delivery,
        pb::ServerCredentialDelivery::Sms as i32
    );
    assert_eq!(
        read(&manager, Role::Manager).await,
        pb::ServerCredentialDelivery::Sms as i32
    );
    let events = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "security_settings.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "one change, one event: {events:?}");
    let after = events[0].after.as_ref().unwrap();
    let value = &after.fields["server_credential_delivery"];
    assert_eq!(
        value.kind,
        Some(prost_types::value::Kind::NumberValue(f64::from(
            pb::ServerCredentialDelivery::Sms as i32
        )))
    );
}
