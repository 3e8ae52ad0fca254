//! The operators' audit: what an operator did to whom, when, as whom.

/// Operator actions on identity that are audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminAction {
    /// UnlockLogin (`tenancy admin unlock-login`).
    UnlockLogin,
    /// EndUserSessions (`tenancy admin end-sessions`).
    EndSessions,
    /// GrantStaff (`tenancy admin grant-staff`).
    GrantStaff,
    /// RevokeStaff (`tenancy admin revoke-staff`).
    RevokeStaff,
    /// RotateSigningKey (`tenancy admin rotate-signing-key`).
    RotateSigningKey,
}

impl AdminAction {
    /// The stable name, also the log lines' `event` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AdminAction::UnlockLogin => "admin.unlock_login",
            AdminAction::EndSessions => "admin.end_sessions",
            AdminAction::GrantStaff => "admin.grant_staff",
            AdminAction::RevokeStaff => "admin.revoke_staff",
            AdminAction::RotateSigningKey => "admin.rotate_signing_key",
        }
    }
}

/// Who runs an operator action: the calling certificate's service name and
/// the call's request id (the operator's certificate names a role, not a
/// person; the request id ties the row to the CLI run and the log lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Operator {
    /// `operator` (or whichever caller a method admits).
    pub(crate) caller: String,
    /// The call's request id.
    pub(crate) request_id: String,
}

/// How many audit entries DescribeUser shows, newest first.
pub(crate) const SHOWN_EVENTS: u64 = 50;

/// One audited operator action. Never a secret: counts and key ids only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdminEvent {
    /// When (Unix ms).
    pub(crate) time: i64,
    /// Who: the calling service as its certificate names it (`operator`).
    pub(crate) caller: String,
    /// The request id of the call (the CLI's `x-request-id`), to match it
    /// with the service's log lines.
    pub(crate) request_id: String,
    /// What: an [`AdminAction`] name.
    pub(crate) action: String,
    /// Whom; `None` for actions on no user (key rotation).
    pub(crate) user_id: Option<tenancy_runtime::ids::UserId>,
    /// What came of it, as `key=value` pairs (`cleared=3`).
    pub(crate) detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_stable() {
        let names: Vec<_> = [
            AdminAction::UnlockLogin,
            AdminAction::EndSessions,
            AdminAction::GrantStaff,
            AdminAction::RevokeStaff,
            AdminAction::RotateSigningKey,
        ]
        .map(AdminAction::as_str)
        .into();
        assert_eq!(
            names,
            [
                "admin.unlock_login",
                "admin.end_sessions",
                "admin.grant_staff",
                "admin.revoke_staff",
                "admin.rotate_signing_key"
            ]
        );
    }
}
