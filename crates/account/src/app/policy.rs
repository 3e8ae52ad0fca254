//! What the account service writes to its policy change log (followed by
//! gateways through WatchPolicies and by the access caches of every
//! replica) and to its audit log, built from store rows. The payloads are
//! protobuf messages by definition of the log.

use base64::Engine as _;
use tenancy_proto::account as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::AccountId;

use crate::domain::{MemberStatus, Role};
use crate::store::{AccountRow, AccountSettings, LiveMember, MemberRow, PolicyEntry, policy_kind};

fn ts(ms: i64) -> prost_types::Timestamp {
    Timestamp(ms).to_proto()
}

/// The gateway's view of a membership.
pub(crate) fn membership_state(m: &LiveMember) -> pb::MembershipState {
    pb::MembershipState {
        account_id: m.account_id.to_string(),
        user_id: m.user_id.to_string(),
        role: m.role.code(),
        status: m.status.code(),
        portal_access: m.portal_access,
        join_time: Some(ts(m.join_time)),
        mfa_deadline: m.mfa_deadline.filter(|_| !m.api).map(ts),
        api_member: m.api,
        source_allowlist: m.source_allowlist(),
    }
}

fn encode(message: &impl prost::Message) -> String {
    base64::engine::general_purpose::STANDARD.encode(message.encode_to_vec())
}

/// The policy log entry for a membership's new state.
pub(crate) fn membership_entry(row: &MemberRow) -> PolicyEntry {
    if row.status == MemberStatus::Revoked {
        PolicyEntry {
            account_id: row.account_id.clone(),
            kind: policy_kind::MEMBERSHIP_REMOVED,
            payload: encode(&pb::MembershipRemoved {
                account_id: row.account_id.to_string(),
                user_id: row.user_id.to_string(),
            }),
        }
    } else {
        PolicyEntry {
            account_id: row.account_id.clone(),
            kind: policy_kind::MEMBERSHIP_CHANGED,
            payload: encode(&membership_state(&row.live())),
        }
    }
}

/// The policy log entry for a change of the account's service catalogue or
/// of a member's grants: read by the access caches of every replica, not
/// streamed to gateways.
pub(crate) fn access_entry(account_id: &AccountId) -> PolicyEntry {
    PolicyEntry {
        account_id: account_id.clone(),
        kind: policy_kind::ACCESS_CHANGED,
        payload: String::new(),
    }
}

/// The policy log entry for an account's settings.
pub(crate) fn settings_entry(account: &AccountRow) -> PolicyEntry {
    PolicyEntry {
        account_id: account.id.clone(),
        kind: policy_kind::SECURITY_SETTINGS_CHANGED,
        payload: encode(&settings_pb(&account.settings())),
    }
}

/// An account's security settings as the API shows them.
pub(crate) fn settings_pb(settings: &AccountSettings) -> pb::SecuritySettings {
    pb::SecuritySettings {
        account_id: settings.id.to_string(),
        enforce_mfa: settings.enforce_mfa,
        mfa_grace_period: (settings.mfa_grace_ms > 0).then_some(prost_types::Duration {
            seconds: settings.mfa_grace_ms / 1000,
            nanos: 0,
        }),
        enforce_mfa_time: if settings.enforce_mfa {
            settings.enforce_mfa_time.map(ts)
        } else {
            None
        },
        ip_allowlist: json_allowlist(&settings.ip_allowlist_json),
        update_time: settings.security_update_time.map(ts),
        update_user_id: settings.security_update_user.clone(),
        server_credential_delivery: settings.server_credential_delivery,
    }
}

/// The stored allowlist.
pub(crate) fn allowlist_of(account: &AccountRow) -> Vec<String> {
    json_allowlist(&account.ip_allowlist_json)
}

/// The entries of an allowlist stored as a JSON array.
fn json_allowlist(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The audit JSON of a member's state.
pub(crate) fn member_json(row: &MemberRow) -> serde_json::Value {
    let mut json = serde_json::json!({
        "role": role_name(row.role),
        "status": pb::MemberStatus::try_from(row.status.code()).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "portal_access": row.portal_access,
    });
    if row.api {
        json["kind"] = "API".into();
        json["name"] = row.added_name.clone().into();
        json["description"] = row.description.clone().into();
        json["source_allowlist"] = row.source_allowlist().into();
    }
    json
}

/// "OWNER" or "MANAGER".
pub(crate) fn role_name(r: Role) -> &'static str {
    match r {
        Role::Owner => "OWNER",
        Role::Manager => "MANAGER",
    }
}
