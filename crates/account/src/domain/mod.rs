//! The account service's rules as plain Rust: no tonic, no database.
//!
//! - [`access`]: the access decision of CheckAccess from role, status,
//!   scope and tags, and which services a member reaches.
//! - [`members`]: who may change a membership and what each change does.
//! - [`error`]: [`AccountError`], the refusals of these rules, and their
//!   one mapping to a gRPC answer.
//! - [`owners`]: the "at least one active owner" invariant.
//! - [`validate`]: parsing of account fields, emails, tags, kinds and CIDRs.
//! - [`mfa`]: personal 2FA deadlines.
//! - [`default_account`]: the account a login selects when none was named.

pub mod access;
pub mod default_account;
pub mod error;
pub mod members;
pub mod mfa;
pub mod owners;
pub mod validate;

pub use error::AccountError;

use tenancy_runtime::ids::ServiceId;

/// An enum stored and sent as its `tenancy.*` proto number: `code()` and
/// `from_code()` convert at the store and api edges; JSON (audit, stored
/// invitation scopes) carries the number too.
macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The stored / proto number.
            pub fn code(self) -> i32 {
                self as i32
            }

            /// The value of a stored / proto number.
            pub fn from_code(code: i32) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i32(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = <i32 as serde::Deserialize>::deserialize(d)?;
                Self::from_code(code).ok_or_else(|| {
                    serde::de::Error::custom(format_args!("unknown {} {code}", stringify!($name)))
                })
            }
        }
    };
}

coded_enum! {
    /// A member's role (the `tenancy.auth.v1.Role` numbers); higher is more.
    Role {
        /// Full access without user management.
        Manager = 1,
        /// Full access with user management.
        Owner = 2,
    }
}

coded_enum! {
    /// A membership's status (the `MemberStatus` numbers).
    MemberStatus {
        /// In effect.
        Active = 1,
        /// Disabled by an owner.
        Suspended = 2,
        /// Ended for good (counts as not a member).
        Revoked = 3,
    }
}

coded_enum! {
    /// Which services a member reaches wholesale (the `ServiceAccess` numbers).
    #[derive(Default)]
    ServiceAccess {
        /// No service wholesale (grants only).
        #[default]
        None = 1,
        /// Every service.
        All = 2,
        /// The selected services.
        Selected = 3,
    }
}

coded_enum! {
    /// An access level (the `AccessLevel` numbers); higher is more.
    #[derive(Default)]
    Level {
        /// No access.
        #[default]
        None = 0,
        /// See.
        View = 1,
        /// See and change.
        Manage = 2,
    }
}

impl Level {
    /// A level a grant or a check may ask for: VIEW or MANAGE.
    pub fn grantable(code: i32) -> Option<Self> {
        Self::from_code(code).filter(|l| *l != Self::None)
    }
}

coded_enum! {
    /// Kinds of rows in the member grant table (`account_member_grants`).
    GrantKind {
        /// A selected service (SERVICE_ACCESS_SELECTED), always MANAGE.
        Selected = 1,
        /// A per-service grant.
        Resource = 2,
        /// A per-tag grant.
        Tag = 3,
    }
}

coded_enum! {
    /// An invitation's state (the `InvitationState` numbers).
    InvitationState {
        /// Waiting for acceptance.
        Pending = 1,
        /// Accepted.
        Accepted = 2,
        /// Cancelled.
        Cancelled = 3,
        /// Expired (stored once a newer invitation replaces it; otherwise
        /// derived, see [`InvitationState::at`]).
        Expired = 4,
    }
}

impl InvitationState {
    /// The state clients see at `now` of an invitation stored in this
    /// state that expires at `expire_time`: PENDING past its expiry is
    /// EXPIRED.
    pub fn at(self, expire_time: i64, now: i64) -> Self {
        if self == Self::Pending && expire_time <= now {
            Self::Expired
        } else {
            self
        }
    }
}

/// A member's access scope, as the domain sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Whether the member may sign in to the account.
    pub portal_access: bool,
    /// The wholesale mode (an unknown stored number reads as NONE, as
    /// invitations always treated it).
    #[serde(deserialize_with = "service_access_or_none")]
    pub service_access: ServiceAccess,
    /// Selected services (SELECTED mode).
    pub selected: Vec<ServiceId>,
    /// (service, level) grants.
    pub resources: Vec<(ServiceId, Level)>,
    /// (tag, level) grants.
    pub tags: Vec<(String, Level)>,
}

fn service_access_or_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<ServiceAccess, D::Error> {
    let code = <i32 as serde::Deserialize>::deserialize(d)?;
    Ok(ServiceAccess::from_code(code).unwrap_or_default())
}
