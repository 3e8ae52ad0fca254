//! The access decision: may a user act on a target in an account, at a
//! level, and why. The order of the rules is the contract documented on
//! `AccessReason` in the proto.

use tenancy_runtime::ids::ServiceId;

use super::{Level, MemberStatus, Role, Scope, ServiceAccess};

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
    /// Role.
    pub role: Role,
    /// Status (REVOKED counts as not a member).
    pub status: MemberStatus,
    /// Portal access.
    pub portal_access: bool,
    /// Service-access mode.
    pub service_access: ServiceAccess,
}

/// What the scope grants on one service (or tag), gathered by the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetGrants {
    /// The service exists in the account (always true for tag targets).
    pub exists: bool,
    /// The service is among the member's selected services.
    pub selected: bool,
    /// The level of a resource grant on it, or NONE.
    pub resource_level: Level,
    /// The highest level of a tag grant matching it, or NONE.
    pub tag_level: Level,
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
    pub effective_level: Level,
}

fn deny(reason: i32) -> Decision {
    Decision {
        allowed: false,
        reason,
        effective_level: Level::None,
    }
}

/// The membership part of a decision: `None` when the member may use the
/// account, else the denial.
pub fn membership_denial(member: Option<MemberFacts>) -> Option<Decision> {
    match member {
        None => Some(deny(reason::DENIED_NOT_MEMBER)),
        Some(m) if m.status == MemberStatus::Revoked => Some(deny(reason::DENIED_NOT_MEMBER)),
        Some(m) if m.status != MemberStatus::Active => Some(deny(reason::DENIED_NOT_ACTIVE)),
        Some(m) if !m.portal_access => Some(deny(reason::DENIED_NO_PORTAL_ACCESS)),
        Some(_) => None,
    }
}

/// The rules granting a level on a service or tag target, in the
/// documented order: (reason, level it grants).
fn rules(m: MemberFacts, grants: TargetGrants, is_tag: bool) -> [(i32, Level); 5] {
    let manage_if = |rule: bool| if rule { Level::Manage } else { Level::None };
    [
        (reason::OWNER, manage_if(m.role == Role::Owner)),
        (
            reason::ALL_SERVICES,
            manage_if(m.service_access == ServiceAccess::All),
        ),
        (
            reason::SELECTED_SERVICE,
            manage_if(!is_tag && grants.selected && m.service_access == ServiceAccess::Selected),
        ),
        (
            reason::RESOURCE_GRANT,
            if is_tag {
                Level::None
            } else {
                grants.resource_level
            },
        ),
        (reason::TAG_GRANT, grants.tag_level),
    ]
}

/// Decides `wanted` (VIEW or MANAGE; ignored for [`Target::Account`]).
pub fn decide(member: Option<MemberFacts>, target: Target, wanted: Level) -> Decision {
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
                reason: if m.role == Role::Owner {
                    reason::OWNER
                } else {
                    reason::ACTIVE_MEMBER
                },
                effective_level: Level::Manage,
            };
        }
        Target::Service(g) | Target::Tag(g) => g,
    };
    if !grants.exists {
        return deny(reason::DENIED_SERVICE_NOT_FOUND);
    }
    let rules = rules(m, grants, matches!(target, Target::Tag(_)));
    let effective_level = rules.iter().map(|(_, l)| *l).max().unwrap_or(Level::None);
    match rules.iter().find(|(_, l)| *l >= wanted && *l > Level::None) {
        Some((reason, _)) => Decision {
            allowed: true,
            reason: *reason,
            effective_level,
        },
        None => Decision {
            allowed: false,
            reason: if effective_level > Level::None {
                reason::DENIED_INSUFFICIENT_LEVEL
            } else {
                reason::DENIED_NO_ACCESS
            },
            effective_level,
        },
    }
}

/// Whether a member reaches every service of the account wholesale (owners
/// and ALL mode), so no per-service rule needs looking at.
pub fn reaches_all_services(m: MemberFacts) -> bool {
    m.role == Role::Owner || m.service_access == ServiceAccess::All
}

/// What `scope` grants on service `service_id` carrying `service_tags`
/// (a service of the account's catalogue). THE definition of which grants
/// apply to a service; the access cache computes the same from its indexes
/// and ListServices pre-filters in SQL, both tested against this.
pub fn grants_on(
    scope: &Scope,
    service_id: &ServiceId,
    service_tags: &[impl AsRef<str>],
) -> TargetGrants {
    let best = |levels: &mut dyn Iterator<Item = Level>| levels.max().unwrap_or(Level::None);
    TargetGrants {
        exists: true,
        selected: scope.selected.iter().any(|id| id == service_id),
        resource_level: best(
            &mut scope
                .resources
                .iter()
                .filter(|(id, _)| id == service_id)
                .map(|(_, l)| *l),
        ),
        tag_level: best(
            &mut scope
                .tags
                .iter()
                .filter(|(tag, _)| service_tags.iter().any(|t| t.as_ref() == tag))
                .map(|(_, l)| *l),
        ),
    }
}

/// The level an ACTIVE member with portal access has on a service of the
/// catalogue: the highest level any rule of [`decide`] grants (NONE: the
/// service is not shown to them).
pub fn service_level(m: MemberFacts, grants: TargetGrants) -> Level {
    rules(m, grants, false)
        .iter()
        .map(|(_, l)| *l)
        .max()
        .unwrap_or(Level::None)
}

/// The services of `catalogue` ((id, tags) pairs) on which the member has
/// at least `wanted`, sorted: what BatchCheckAccess lists as accessible and
/// what ListServices shows (at VIEW) to a member who does not reach
/// every service.
pub fn reachable_services<'a, T: AsRef<str> + 'a>(
    m: MemberFacts,
    scope: &Scope,
    catalogue: impl IntoIterator<Item = (&'a ServiceId, &'a [T])>,
    wanted: Level,
) -> Vec<ServiceId> {
    let mut out: Vec<ServiceId> = catalogue
        .into_iter()
        .filter(|(id, tags)| {
            service_level(m, grants_on(scope, id, tags)) >= wanted.max(Level::View)
        })
        .map(|(id, _)| id.clone())
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(mode: ServiceAccess) -> Option<MemberFacts> {
        Some(MemberFacts {
            role: Role::Manager,
            status: MemberStatus::Active,
            portal_access: true,
            service_access: mode,
        })
    }

    fn on(g: TargetGrants) -> Target {
        Target::Service(TargetGrants { exists: true, ..g })
    }

    #[test]
    fn membership_is_checked_first() {
        let suspended = manager(ServiceAccess::All).map(|m| MemberFacts {
            status: MemberStatus::Suspended,
            ..m
        });
        assert_eq!(
            decide(None, Target::Account, Level::None).reason,
            reason::DENIED_NOT_MEMBER
        );
        assert_eq!(
            decide(suspended, Target::Account, Level::None).reason,
            reason::DENIED_NOT_ACTIVE
        );
        let no_portal = manager(ServiceAccess::All).map(|m| MemberFacts {
            portal_access: false,
            ..m
        });
        assert_eq!(
            decide(no_portal, Target::Account, Level::None).reason,
            reason::DENIED_NO_PORTAL_ACCESS
        );
    }

    #[test]
    fn the_first_granting_rule_is_named() {
        let d = decide(
            manager(ServiceAccess::Selected),
            on(TargetGrants {
                selected: true,
                resource_level: Level::Manage,
                ..Default::default()
            }),
            Level::View,
        );
        assert_eq!(d.reason, reason::SELECTED_SERVICE);
        let d = decide(
            manager(ServiceAccess::None),
            on(TargetGrants {
                tag_level: Level::View,
                ..Default::default()
            }),
            Level::Manage,
        );
        assert_eq!(d.reason, reason::DENIED_INSUFFICIENT_LEVEL);
        assert_eq!(d.effective_level, Level::View);
        let d = decide(
            manager(ServiceAccess::None),
            on(TargetGrants::default()),
            Level::View,
        );
        assert_eq!(d.reason, reason::DENIED_NO_ACCESS);
    }

    #[test]
    fn selected_services_only_count_in_selected_mode() {
        let d = decide(
            manager(ServiceAccess::None),
            on(TargetGrants {
                selected: true,
                ..Default::default()
            }),
            Level::View,
        );
        assert!(!d.allowed);
    }
}
