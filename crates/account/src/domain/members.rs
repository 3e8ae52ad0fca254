//! Who may change a membership, and what each change does to it.

use super::error::AccountError;
use super::{MemberStatus, Role};

/// The part of a membership the caller check looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerFacts {
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MemberStatus,
    /// Portal access.
    pub portal_access: bool,
}

/// The caller of an account method must be an ACTIVE member with portal
/// access and at least `min_role` (from live membership, not the token).
pub fn check_caller(member: Option<CallerFacts>, min_role: Role) -> Result<(), AccountError> {
    let member = member
        .filter(|m| m.status != MemberStatus::Revoked)
        .ok_or(AccountError::NotAMember)?;
    if member.status != MemberStatus::Active {
        return Err(AccountError::CallerSuspended);
    }
    if !member.portal_access {
        return Err(AccountError::PortalAccessDisabled);
    }
    if member.role < min_role {
        return Err(AccountError::RoleTooLow { required: min_role });
    }
    Ok(())
}

/// A change an owner (or the member, for [`MemberChange::Leave`]) makes to
/// a membership's role or status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// ChangeMemberRole.
    Role(Role),
    /// SuspendMember.
    Suspend,
    /// ReactivateMember.
    Reactivate,
    /// RevokeMember.
    Revoke,
    /// LeaveAccount.
    Leave,
}

impl MemberChange {
    /// The audit action.
    pub fn action(self) -> &'static str {
        match self {
            Self::Role(_) => "member.change_role",
            Self::Suspend => "member.suspend",
            Self::Reactivate => "member.reactivate",
            Self::Revoke => "member.revoke",
            Self::Leave => "member.leave",
        }
    }

    /// The least role the caller needs.
    pub fn min_role(self) -> Role {
        match self {
            Self::Leave => Role::Manager,
            _ => Role::Owner,
        }
    }

    /// Whether the change may name the caller (only leaving does; the
    /// others refuse with TargetIsSelf).
    pub fn check_target(self, caller_is_target: bool) -> Result<(), AccountError> {
        match self {
            Self::Suspend | Self::Revoke if caller_is_target => Err(AccountError::TargetIsSelf),
            _ => Ok(()),
        }
    }

    /// The (role, status) after the change, or `None` when nothing changes.
    /// A revoked membership only comes back through a new invitation.
    pub fn apply(
        self,
        role: Role,
        status: MemberStatus,
    ) -> Result<Option<(Role, MemberStatus)>, AccountError> {
        let revoked = status == MemberStatus::Revoked;
        let after = match self {
            Self::Role(_) | Self::Suspend | Self::Reactivate if revoked => {
                return Err(AccountError::MemberRevoked);
            }
            Self::Role(new) => (new, status),
            Self::Suspend => (role, MemberStatus::Suspended),
            Self::Reactivate => (role, MemberStatus::Active),
            Self::Revoke | Self::Leave => (role, MemberStatus::Revoked),
        };
        // Leaving always writes (and re-logs) the membership.
        Ok((after != (role, status) || self == Self::Leave).then_some(after))
    }
}

/// Why a member who lost access loses their API tokens in identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostAccess {
    /// Suspended by an owner.
    Suspended,
    /// Left the account.
    Left,
    /// Revoked, or portal access taken away.
    Revoked,
}

/// Whether a change from (`status`, `portal_access`) before to after takes
/// the member's access away, and why.
pub fn lost_access(
    before: (MemberStatus, bool),
    after: (MemberStatus, bool),
    leaving: bool,
) -> Option<LostAccess> {
    let lost = (before.0 == MemberStatus::Active && after.0 != MemberStatus::Active)
        || (before.1 && !after.1);
    if !lost {
        return None;
    }
    Some(match after.0 {
        MemberStatus::Suspended => LostAccess::Suspended,
        _ if leaving => LostAccess::Left,
        _ => LostAccess::Revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: CallerFacts = CallerFacts {
        role: Role::Owner,
        status: MemberStatus::Active,
        portal_access: true,
    };

    #[test]
    fn callers_are_active_members_with_portal_access_and_the_role() {
        assert_eq!(check_caller(Some(OWNER), Role::Owner), Ok(()));
        assert_eq!(
            check_caller(None, Role::Manager),
            Err(AccountError::NotAMember)
        );
        let revoked = CallerFacts {
            status: MemberStatus::Revoked,
            ..OWNER
        };
        assert_eq!(
            check_caller(Some(revoked), Role::Manager),
            Err(AccountError::NotAMember)
        );
        let suspended = CallerFacts {
            status: MemberStatus::Suspended,
            ..OWNER
        };
        assert_eq!(
            check_caller(Some(suspended), Role::Manager),
            Err(AccountError::CallerSuspended)
        );
        let no_portal = CallerFacts {
            portal_access: false,
            ..OWNER
        };
        assert_eq!(
            check_caller(Some(no_portal), Role::Manager),
            Err(AccountError::PortalAccessDisabled)
        );
        let manager = CallerFacts {
            role: Role::Manager,
            ..OWNER
        };
        assert_eq!(
            check_caller(Some(manager), Role::Owner),
            Err(AccountError::RoleTooLow {
                required: Role::Owner
            })
        );
    }

    #[test]
    fn revoked_memberships_only_accept_revoke_and_leave() {
        let revoked = MemberStatus::Revoked;
        for change in [
            MemberChange::Suspend,
            MemberChange::Reactivate,
            MemberChange::Role(Role::Owner),
        ] {
            assert_eq!(
                change.apply(Role::Manager, revoked),
                Err(AccountError::MemberRevoked)
            );
        }
        assert_eq!(MemberChange::Revoke.apply(Role::Manager, revoked), Ok(None));
        assert_eq!(
            MemberChange::Leave.apply(Role::Manager, revoked),
            Ok(Some((Role::Manager, revoked)))
        );
    }

    #[test]
    fn repeating_a_change_changes_nothing() {
        let active = MemberStatus::Active;
        assert_eq!(
            MemberChange::Suspend.apply(Role::Manager, MemberStatus::Suspended),
            Ok(None)
        );
        assert_eq!(
            MemberChange::Reactivate.apply(Role::Owner, active),
            Ok(None)
        );
        assert_eq!(
            MemberChange::Role(Role::Owner).apply(Role::Owner, active),
            Ok(None)
        );
        assert_eq!(
            MemberChange::Suspend.apply(Role::Owner, active),
            Ok(Some((Role::Owner, MemberStatus::Suspended)))
        );
    }

    #[test]
    fn suspending_or_revoking_oneself_is_refused() {
        assert_eq!(
            MemberChange::Suspend.check_target(true),
            Err(AccountError::TargetIsSelf)
        );
        assert_eq!(
            MemberChange::Revoke.check_target(true),
            Err(AccountError::TargetIsSelf)
        );
        assert_eq!(MemberChange::Leave.check_target(true), Ok(()));
        assert_eq!(MemberChange::Suspend.check_target(false), Ok(()));
    }

    #[test]
    fn losing_access_names_why() {
        let (active, suspended, revoked) = (
            MemberStatus::Active,
            MemberStatus::Suspended,
            MemberStatus::Revoked,
        );
        assert_eq!(
            lost_access((active, true), (suspended, true), false),
            Some(LostAccess::Suspended)
        );
        assert_eq!(
            lost_access((active, true), (revoked, true), true),
            Some(LostAccess::Left)
        );
        assert_eq!(
            lost_access((active, true), (active, false), false),
            Some(LostAccess::Revoked)
        );
        assert_eq!(lost_access((suspended, true), (revoked, true), false), None);
        assert_eq!(lost_access((active, true), (active, true), false), None);
    }
}
