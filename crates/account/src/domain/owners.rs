//! The account must always keep one active owner: a member with role OWNER,
//! status ACTIVE and portal access.

use super::{MemberStatus, Role};

/// The facts of a membership that decide whether it is an "active owner".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerFacts {
    /// The role.
    pub role: Role,
    /// The status.
    pub status: MemberStatus,
    /// Whether the member has portal access.
    pub portal_access: bool,
}

impl OwnerFacts {
    /// Whether these facts make an active owner. THE definition:
    /// `store::active_owners` counts the same in SQL, and a test
    /// (`tests/it/rules.rs`) proves the two agree.
    pub fn is_active_owner(self) -> bool {
        self.role == Role::Owner && self.status == MemberStatus::Active && self.portal_access
    }
}

/// Whether changing a member from `before` to `after` is allowed, given how
/// many active owners the account has now (`active_owners`, counted inside
/// the same transaction after locking the account).
pub fn change_keeps_an_owner(before: OwnerFacts, after: OwnerFacts, active_owners: u64) -> bool {
    if !before.is_active_owner() || after.is_active_owner() {
        return true;
    }
    active_owners > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: OwnerFacts = OwnerFacts {
        role: Role::Owner,
        status: MemberStatus::Active,
        portal_access: true,
    };

    #[test]
    fn the_last_active_owner_cannot_stop_being_one() {
        let demoted = OwnerFacts {
            role: Role::Manager,
            ..OWNER
        };
        let suspended = OwnerFacts {
            status: MemberStatus::Suspended,
            ..OWNER
        };
        let no_portal = OwnerFacts {
            portal_access: false,
            ..OWNER
        };
        for after in [demoted, suspended, no_portal] {
            assert!(!change_keeps_an_owner(OWNER, after, 1));
            assert!(change_keeps_an_owner(OWNER, after, 2));
        }
    }

    #[test]
    fn changes_to_other_members_are_free() {
        let manager = OwnerFacts {
            role: Role::Manager,
            ..OWNER
        };
        let suspended = OwnerFacts {
            status: MemberStatus::Suspended,
            ..manager
        };
        assert!(change_keeps_an_owner(manager, suspended, 1));
        assert!(change_keeps_an_owner(OWNER, OWNER, 1));
    }
}
