//! What the account service writes to its policy change log (followed by
//! gateways through WatchPolicies and by the access caches of every
//! replica) and to its audit log, built from store rows. The payloads are
//! protobuf messages by definition of the log.

use base64::Engine as _;
use tenancy_proto::account as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::AccountId;

use crate::domain::{MemberStatus, Role};
use crate::store::{AccountRow, MemberRow, PolicyEntry, policy_kind};

fn ts(ms: i64) -> prost_types::Timestamp {
    Timestamp(ms).to_proto()
}

/// The gateway's view of a membership.
pub(crate) fn membership_state(row: &MemberRow) -> pb::MembershipState {
    pb::MembershipState {
        account_id: row.account_id.to_string(),
        user_id: row.user_id.to_string(),
        role: row.role.code(),
        status: row.status.code(),
        portal_access: row.portal_access,
        join_time: Some(ts(row.join_time)),
        mfa_deadline: row.mfa_deadline.filter(|_| !row.api).map(ts),
        api_member: row.api,
        source_allowlist: row.source_allowlist(),
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
            payload: encode(&membership_state(row)),
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
        payload: encode(&settings_pb(account)),
    }
}

/// An account's security settings as the API shows them.
pub(crate) fn settings_pb(account: &AccountRow) -> pb::SecuritySettings {
    pb::SecuritySettings {
        account_id: account.id.to_string(),
        enforce_mfa: account.enforce_mfa,
        mfa_grace_period: (account.mfa_grace_ms > 0).then_some(prost_types::Duration {
            seconds: account.mfa_grace_ms / 1000,
            nanos: 0,
        }),
        enforce_mfa_time: if account.enforce_mfa {
            account.enforce_mfa_time.map(ts)
        } else {
            None
        },
        ip_allowlist: allowlist_of(account),
        update_time: account.security_update_time.map(ts),
        update_user_id: account.security_update_user.clone(),
        server_credential_delivery: account.server_credential_delivery,
    }
}

/// The stored allowlist.
pub(crate) fn allowlist_of(account: &AccountRow) -> Vec<String> {
    serde_json::from_str(&account.ip_allowlist_json).unwrap_or_default()
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
