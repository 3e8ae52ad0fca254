//! The account service's rules as plain Rust: no tonic, no database.
//!
//! - [`access`]: the access decision of CheckAccess from role, status,
//!   scope and tags.
//! - [`owners`]: the "at least one active owner" invariant.
//! - [`validate`]: parsing of account fields, emails, tags, kinds and CIDRs.
//! - [`mfa`]: personal 2FA deadlines.
//! - [`default_account`]: the account a login selects when none was named.

pub mod access;
pub mod default_account;
pub mod mfa;
pub mod owners;
pub mod validate;

/// Role codes as stored (the `tenancy.auth.v1.Role` numbers).
pub mod role {
    /// A manager: full access without user management.
    pub const MANAGER: i32 = 1;
    /// An owner: full access with user management.
    pub const OWNER: i32 = 2;
}

/// Membership status codes as stored (the `MemberStatus` numbers).
pub mod status {
    /// In effect.
    pub const ACTIVE: i32 = 1;
    /// Disabled by an owner.
    pub const SUSPENDED: i32 = 2;
    /// Ended for good.
    pub const REVOKED: i32 = 3;
}

/// Service-access modes as stored (the `ServiceAccess` numbers).
pub mod service_access {
    /// No service wholesale.
    pub const NONE: i32 = 1;
    /// Every service.
    pub const ALL: i32 = 2;
    /// The selected services.
    pub const SELECTED: i32 = 3;
}

/// Access levels (the `AccessLevel` numbers); higher is more.
pub mod level {
    /// No access.
    pub const NONE: i32 = 0;
    /// See.
    pub const VIEW: i32 = 1;
    /// See and change.
    pub const MANAGE: i32 = 2;
}

/// Kinds of rows in the member grant table.
pub mod grant_kind {
    /// A selected service (SERVICE_ACCESS_SELECTED), always MANAGE.
    pub const SELECTED: i32 = 1;
    /// A per-service grant.
    pub const RESOURCE: i32 = 2;
    /// A per-tag grant.
    pub const TAG: i32 = 3;
}

/// Invitation states as stored (the `InvitationState` numbers; EXPIRED is
/// also derived from `expire_time` for PENDING rows).
pub mod invitation_state {
    /// Waiting for acceptance.
    pub const PENDING: i32 = 1;
    /// Accepted.
    pub const ACCEPTED: i32 = 2;
    /// Cancelled.
    pub const CANCELLED: i32 = 3;
    /// Expired (stored once a newer invitation replaces it).
    pub const EXPIRED: i32 = 4;
}

/// A member's access scope, as the domain sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Whether the member may sign in to the account.
    pub portal_access: bool,
    /// One of [`service_access`].
    pub service_access: i32,
    /// Selected service ids (SELECTED mode).
    pub selected: Vec<String>,
    /// (service id, level) grants.
    pub resources: Vec<(String, i32)>,
    /// (tag, level) grants.
    pub tags: Vec<(String, i32)>,
}
