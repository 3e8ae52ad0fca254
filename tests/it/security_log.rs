//! Issue 19: security events are log lines with a stable `event` field a
//! SIEM can match, in the JSON a log collector receives, naming the
//! principal (ids only, never a secret).

use tenancy_proto::account::{
    ChangeMemberRoleRequest, SecuritySettings, SuspendMemberRequest, UpdateSecuritySettingsRequest,
};
use tenancy_proto::auth::Role;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{CreateApiTokenRequest, LoginRequest, RevokeApiTokenRequest};

use tenancy_runtime::telemetry::LogLines;

use crate::gateway::{PASSWORD, Suite, user_of};

// One thread: the suite's tasks log under this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn security_events_are_json_log_lines_with_a_stable_event_field() {
    let lines = LogLines::default();
    let _logs = tracing::subscriber::set_default(tenancy_runtime::telemetry::json_logs_to(
        "info",
        lines.clone(),
    ));
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("siem-owner@example.com").await;
    let (account, owner) = suite.account_of(&owner).await;
    let owner_id = user_of(&owner);
    let manager = suite
        .member(&owner, &account, "siem-manager@example.com", Role::Manager)
        .await;
    let manager_id = user_of(&manager);
    // A wrong password, then too many: the login throttle locks it out.
    let mut locked = false;
    for _ in 0..30 {
        let status = IdentityServiceClient::new(suite.gateway.clone())
            .login(LoginRequest {
                email: "siem-owner@example.com".into(),
                password: "not the password at all".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        if status.code() == tonic::Code::ResourceExhausted {
            locked = true;
            break;
        }
    }
    assert!(locked, "never throttled");
    let token = suite
        .identity(&owner)
        .create_api_token(CreateApiTokenRequest {
            name: "siem".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api_token
        .unwrap();
    suite
        .identity(&owner)
        .revoke_api_token(RevokeApiTokenRequest {
            api_token_id: token.id.clone(),
        })
        .await
        .unwrap();
    suite
        .account(&owner)
        .change_member_role(ChangeMemberRoleRequest {
            user_id: manager_id.clone(),
            role: Role::Owner as i32,
        })
        .await
        .unwrap();
    suite
        .account(&owner)
        .suspend_member(SuspendMemberRequest {
            user_id: manager_id.clone(),
        })
        .await
        .unwrap();
    suite
        .account(&owner)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings {
                enforce_mfa: true,
                mfa_grace_period: Some(prost_types::Duration {
                    seconds: 7 * 24 * 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enforce_mfa".into(), "mfa_grace_period".into()],
            }),
            force: false,
        })
        .await
        .unwrap();

    let logged = lines.json();
    let with = |event: &str| -> Vec<&serde_json::Value> {
        logged.iter().filter(|l| l["event"] == event).collect()
    };
    let successes = with("login.success");
    assert!(
        successes.iter().any(|l| l["user_id"] == owner_id.as_str()),
        "{successes:?}"
    );
    for event in ["login.failure", "login.locked_out"] {
        let found = with(event);
        assert!(
            found
                .iter()
                .any(|l| l["user_id"] == owner_id.as_str() && l["client_ip"].is_string()),
            "{event}: {found:?}"
        );
    }
    for event in ["api_token.create", "api_token.revoke"] {
        let found = with(event);
        assert!(
            found.iter().any(|l| l["api_token_id"] == token.id.as_str()
                && l["account_id"] == account.as_str()
                && l["user_id"] == owner_id.as_str()),
            "{event}: {found:?}"
        );
    }
    for event in ["member.change_role", "member.suspend"] {
        let found = with(event);
        assert!(
            found.iter().any(|l| l["target_id"] == manager_id.as_str()
                && l["account_id"] == account.as_str()
                && l["actor_id"] == owner_id.as_str()),
            "{event}: {found:?}"
        );
    }
    let settings = with("security_settings.update");
    assert!(
        settings.iter().any(|l| l["account_id"] == account.as_str()),
        "{settings:?}"
    );
    // Never a secret: no password, no token secret in any line.
    let all = lines.text();
    assert!(!all.contains(PASSWORD));
    assert!(!all.contains("not the password at all"));
}
