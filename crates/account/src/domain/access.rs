//! The access decision: may a user act on a target in an account, at a
//! level, and why. The order of the rules is the contract documented on
//! `AccessReason` in the proto.

use super::{level, role, service_access, status};

/// Reason codes (the `AccessReason` numbers).
pub mod reason {
    #![allow(missing_docs)]
    pub const OWNER: i32 = 1;
    pub const ACTIVE_MEMBER: i32 = 2;
    pub const ALL_SERVICES: i32 = 3;
    pub const SELECTED_SERVICE: i32 = 4;
    pub const RESOURCE_GRANT: i32 = 5;
    pub const TAG_GRANT: i32 = 6;
    pub const DENIED_NOT_MEMBER: i32 = 7;
    pub const DENIED_NOT_ACTIVE: i32 = 8;
    pub const DENIED_NO_PORTAL_ACCESS: i32 = 9;
    pub const DENIED_SERVICE_NOT_FOUND: i32 = 10;
    pub const DENIED_INSUFFICIENT_LEVEL: i32 = 11;
    pub const DENIED_NO_ACCESS: i32 = 12;
}

/// The membership facts a decision needs.
#[derive(Clone, Copy, Debug)]
pub struct MemberFacts {
    /// Role code.
    pub role: i32,
    /// Status code (REVOKED counts as not a member).
    pub status: i32,
    /// Portal access.
    pub portal_access: bool,
    /// Service-access mode.
    pub service_access: i32,
}

/// What the scope grants on one service (or tag), gathered by the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetGrants {
    /// The service exists in the account (always true for tag targets).
    pub exists: bool,
    /// The service is among the member's selected services.
    pub selected: bool,
    /// The level of a resource grant on it, or 0.
    pub resource_level: i32,
    /// The highest level of a tag grant matching it, or 0.
    pub tag_level: i32,
}

/// The target of a check.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The account itself: membership only.
    Account,
    /// One service.
    Service(TargetGrants),
    /// Services with a tag (only owners, ALL, and tag grants on the tag).
    Tag(TargetGrants),
}

/// The answer of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// Reason code.
    pub reason: i32,
    /// The highest level the member has on the target.
    pub effective_level: i32,
}

fn deny(reason: i32) -> Decision {
    Decision {
        allowed: false,
        reason,
        effective_level: level::NONE,
    }
}

/// The membership part of a decision: `None` when the member may use the
/// account, else the denial.
pub fn membership_denial(member: Option<MemberFacts>) -> Option<Decision> {
    match member {
        None => Some(deny(reason::DENIED_NOT_MEMBER)),
        Some(m) if m.status == status::REVOKED => Some(deny(reason::DENIED_NOT_MEMBER)),
        Some(m) if m.status != status::ACTIVE => Some(deny(reason::DENIED_NOT_ACTIVE)),
        Some(m) if !m.portal_access => Some(deny(reason::DENIED_NO_PORTAL_ACCESS)),
        Some(_) => None,
    }
}

/// Decides `wanted` (VIEW or MANAGE; ignored for [`Target::Account`]).
pub fn decide(member: Option<MemberFacts>, target: Target, wanted: i32) -> Decision {
    if let Some(denied) = membership_denial(member) {
        return denied;
    }
    let Some(m) = member else {
        return deny(reason::DENIED_NOT_MEMBER);
    };
    let grants = match target {
        Target::Account => {
            return Decision {
                allowed: true,
                reason: if m.role == role::OWNER {
                    reason::OWNER
                } else {
                    reason::ACTIVE_MEMBER
                },
                effective_level: level::MANAGE,
            };
        }
        Target::Service(g) | Target::Tag(g) => g,
    };
    if !grants.exists {
        return deny(reason::DENIED_SERVICE_NOT_FOUND);
    }
    let is_tag = matches!(target, Target::Tag(_));
    // (rule reason, level it grants), in the documented order.
    let rules = [
        (
            reason::OWNER,
            if m.role == role::OWNER {
                level::MANAGE
            } else {
                0
            },
        ),
        (
            reason::ALL_SERVICES,
            if m.service_access == service_access::ALL {
                level::MANAGE
            } else {
                0
            },
        ),
        (
            reason::SELECTED_SERVICE,
            if !is_tag && grants.selected && m.service_access == service_access::SELECTED {
                level::MANAGE
            } else {
                0
            },
        ),
        (
            reason::RESOURCE_GRANT,
            if is_tag { 0 } else { grants.resource_level },
        ),
        (reason::TAG_GRANT, grants.tag_level),
    ];
    let effective_level = rules.iter().map(|(_, l)| *l).max().unwrap_or(0);
    match rules.iter().find(|(_, l)| *l >= wanted && *l > 0) {
        Some((reason, _)) => Decision {
            allowed: true,
            reason: *reason,
            effective_level,
        },
        None => Decision {
            allowed: false,
            reason: if effective_level > 0 {
                reason::DENIED_INSUFFICIENT_LEVEL
            } else {
                reason::DENIED_NO_ACCESS
            },
            effective_level,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(mode: i32) -> Option<MemberFacts> {
        Some(MemberFacts {
            role: role::MANAGER,
            status: status::ACTIVE,
            portal_access: true,
            service_access: mode,
        })
    }

    fn on(g: TargetGrants) -> Target {
        Target::Service(TargetGrants { exists: true, ..g })
    }

    #[test]
    fn membership_is_checked_first() {
        let suspended = manager(service_access::ALL).map(|m| MemberFacts {
            status: status::SUSPENDED,
            ..m
        });
        assert_eq!(
            decide(None, Target::Account, 0).reason,
            reason::DENIED_NOT_MEMBER
        );
        assert_eq!(
            decide(suspended, Target::Account, 0).reason,
            reason::DENIED_NOT_ACTIVE
        );
        let no_portal = manager(service_access::ALL).map(|m| MemberFacts {
            portal_access: false,
            ..m
        });
        assert_eq!(
            decide(no_portal, Target::Account, 0).reason,
            reason::DENIED_NO_PORTAL_ACCESS
        );
    }

    #[test]
    fn the_first_granting_rule_is_named() {
        let d = decide(
            manager(service_access::SELECTED),
            on(TargetGrants {
                selected: true,
                resource_level: level::MANAGE,
                ..Default::default()
            }),
            level::VIEW,
        );
        assert_eq!(d.reason, reason::SELECTED_SERVICE);
        let d = decide(
            manager(service_access::NONE),
            on(TargetGrants {
                tag_level: level::VIEW,
                ..Default::default()
            }),
            level::MANAGE,
        );
        assert_eq!(d.reason, reason::DENIED_INSUFFICIENT_LEVEL);
        assert_eq!(d.effective_level, level::VIEW);
        let d = decide(
            manager(service_access::NONE),
            on(TargetGrants::default()),
            1,
        );
        assert_eq!(d.reason, reason::DENIED_NO_ACCESS);
    }

    #[test]
    fn selected_services_only_count_in_selected_mode() {
        let d = decide(
            manager(service_access::NONE),
            on(TargetGrants {
                selected: true,
                ..Default::default()
            }),
            level::VIEW,
        );
        assert!(!d.allowed);
    }
}
