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

/// Property: whatever members do to each other, through the same checks
/// `app::members` applies in one transaction (caller check, target check,
/// the change itself, [`change_keeps_an_owner`]), the account keeps an
/// active owner.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::super::members::{CallerFacts, MemberChange, check_caller};
    use super::*;

    #[derive(Clone, Copy, Debug)]
    struct Member {
        role: Role,
        status: MemberStatus,
        portal_access: bool,
    }

    impl Member {
        fn owner_facts(self) -> OwnerFacts {
            OwnerFacts {
                role: self.role,
                status: self.status,
                portal_access: self.portal_access,
            }
        }

        fn caller_facts(self) -> CallerFacts {
            CallerFacts {
                role: self.role,
                status: self.status,
                portal_access: self.portal_access,
            }
        }
    }

    /// What a member can do to a membership (SetMemberAccess as the
    /// portal-access switch; AddMember and AcceptInvitation as `Join`).
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Change(MemberChange),
        PortalAccess(bool),
        Join(Role),
    }

    fn role() -> impl Strategy<Value = Role> {
        prop::sample::select(Role::ALL.to_vec())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            role().prop_map(|r| Op::Change(MemberChange::Role(r))),
            Just(Op::Change(MemberChange::Suspend)),
            Just(Op::Change(MemberChange::Reactivate)),
            Just(Op::Change(MemberChange::Revoke)),
            Just(Op::Change(MemberChange::Leave)),
            any::<bool>().prop_map(Op::PortalAccess),
            role().prop_map(Op::Join),
        ]
    }

    fn active_owners(members: &[Member]) -> u64 {
        members
            .iter()
            .filter(|m| m.owner_facts().is_active_owner())
            .count() as u64
    }

    /// One operation by `actor` on `target`, as `app::members::apply` runs
    /// it; `false` when refused.
    fn run(members: &mut Vec<Member>, actor: usize, target: usize, op: Op) -> bool {
        let (actor, target) = (actor % members.len(), target % members.len());
        let caller = Some(members[actor].caller_facts());
        let (target, after) = match op {
            Op::Join(role) => {
                members.push(Member {
                    role,
                    status: MemberStatus::Active,
                    portal_access: true,
                });
                return true;
            }
            Op::Change(change) => {
                let target = if change == MemberChange::Leave {
                    actor
                } else {
                    target
                };
                if check_caller(caller, change.min_role()).is_err()
                    || change.check_target(target == actor).is_err()
                {
                    return false;
                }
                let before = members[target];
                let Ok(Some((role, status))) = change.apply(before.role, before.status) else {
                    return false;
                };
                (
                    target,
                    Member {
                        role,
                        status,
                        ..before
                    },
                )
            }
            Op::PortalAccess(portal_access) => {
                if check_caller(caller, Role::Owner).is_err()
                    || members[target].status == MemberStatus::Revoked
                {
                    return false;
                }
                (
                    target,
                    Member {
                        portal_access,
                        ..members[target]
                    },
                )
            }
        };
        if !change_keeps_an_owner(
            members[target].owner_facts(),
            after.owner_facts(),
            active_owners(members),
        ) {
            return false;
        }
        members[target] = after;
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn member_operations_never_leave_an_account_without_an_active_owner(
            others in prop::collection::vec(role(), 0..4),
            ops in prop::collection::vec((any::<usize>(), any::<usize>(), op()), 1..60),
        ) {
            let mut members = vec![Member {
                role: Role::Owner,
                status: MemberStatus::Active,
                portal_access: true,
            }];
            members.extend(others.into_iter().map(|role| Member {
                role,
                status: MemberStatus::Active,
                portal_access: true,
            }));
            for (actor, target, op) in ops {
                run(&mut members, actor, target, op);
                prop_assert!(
                    active_owners(&members) >= 1,
                    "no active owner left after {op:?}: {members:?}"
                );
            }
        }
    }
}
