//! Notification categories, contact roles, member preferences and who
//! receives a notification, with why.

use std::collections::BTreeMap;

use tenancy_runtime::ids::{ContactId, UserId};

use super::email::normalize;

/// Notification categories, numbered as `NotificationCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Invoices, payments.
    Billing = 1,
    /// Unplanned outages.
    TechnicalIncidents = 2,
    /// Planned maintenance.
    Maintenance = 3,
    /// Security notices (mandatory for members).
    Security = 4,
    /// Replies on support tickets (extra recipients only).
    SupportReplies = 5,
    /// Account administration.
    Account = 6,
    /// Abuse complaints.
    Abuse = 7,
}

/// A member's stored choice for one category of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The member.
    pub user: tenancy_runtime::ids::UserId,
    /// The category.
    pub category: Category,
    /// Whether they receive it.
    pub enabled: bool,
    /// When it was stored (Unix ms).
    pub updated_at: i64,
}

/// Every category, in enum order.
pub const CATEGORIES: [Category; 7] = [
    Category::Billing,
    Category::TechnicalIncidents,
    Category::Maintenance,
    Category::Security,
    Category::SupportReplies,
    Category::Account,
    Category::Abuse,
];

impl Category {
    /// From the proto number; `None` for UNSPECIFIED or unknown values.
    pub fn from_i32(value: i32) -> Option<Self> {
        CATEGORIES.iter().copied().find(|c| *c as i32 == value)
    }

    /// Whether members receive it whatever their preference (and may not
    /// switch it off).
    pub fn is_mandatory(self) -> bool {
        self == Self::Security
    }

    /// Whether a member who never changed the category receives it.
    pub fn default_enabled(self) -> bool {
        !matches!(self, Self::Billing | Self::Abuse)
    }

    /// Whether it is routed to all members by preference (not
    /// SUPPORT_REPLIES, which goes to extra recipients only).
    pub fn routed_to_members(self) -> bool {
        self != Self::SupportReplies
    }
}

/// Contact roles, numbered as `ContactRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The account's main contact.
    Primary = 1,
    /// Billing.
    Billing = 2,
    /// Technical.
    Technical = 3,
    /// Emergency.
    Emergency = 4,
    /// Abuse.
    Abuse = 5,
}

/// The most entries of a request's list of roles (`Contact.roles`,
/// `contact_roles`) or of categories (`preferences`): twice the values
/// there are, so a client that repeats one is still served (repeats are
/// collapsed or refused per field) while a list of millions costs nothing.
pub const MAX_ENUM_ENTRIES: usize = 10;
/// The most extra recipients of one notification.
pub const MAX_EXTRA_RECIPIENTS: usize = 100;

/// Every role, in enum order.
pub const ROLES: [Role; 5] = [
    Role::Primary,
    Role::Billing,
    Role::Technical,
    Role::Emergency,
    Role::Abuse,
];

impl Role {
    /// From the proto number; `None` for UNSPECIFIED or unknown values.
    pub fn from_i32(value: i32) -> Option<Self> {
        ROLES.iter().copied().find(|r| *r as i32 == value)
    }

    /// Whether a contact with this role receives `category`.
    pub fn receives(self, category: Category) -> bool {
        use Category as C;
        match self {
            Self::Primary => !matches!(category, C::SupportReplies),
            Self::Billing => category == C::Billing,
            Self::Technical => matches!(category, C::TechnicalIncidents | C::Maintenance),
            Self::Emergency => category == C::TechnicalIncidents,
            Self::Abuse => category == C::Abuse,
        }
    }
}

/// Whether a member receives `category` given their stored choice (`None`:
/// never changed).
pub fn member_receives(category: Category, choice: Option<bool>) -> bool {
    category.is_mandatory() || choice.unwrap_or_else(|| category.default_enabled())
}

/// A contact of the account.
#[derive(Debug, Clone)]
pub struct ContactCandidate {
    /// Its id.
    pub id: ContactId,
    /// Its address.
    pub email: String,
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Whether its address is verified.
    pub verified: bool,
}

/// A user: an ACTIVE member found by routing, or a user extra recipient.
#[derive(Debug, Clone)]
pub struct UserCandidate {
    /// The user.
    pub user_id: UserId,
    /// Their address.
    pub email: String,
    /// Their name.
    pub name: String,
    /// Whether they are an ACTIVE member of the account.
    pub active: bool,
    /// Their stored choice for the category (`None`: default).
    pub choice: Option<bool>,
    /// Whether they may access the notification's service (true when the
    /// notification names none).
    pub service_access: bool,
}

/// A plain-address extra recipient.
#[derive(Debug, Clone)]
pub struct PlainExtra {
    /// The address.
    pub email: String,
    /// The display name.
    pub name: String,
}

/// Why a recipient was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A verified contact with a role receiving the category.
    ContactRole {
        /// The contact.
        contact_id: ContactId,
        /// The role.
        role: Role,
    },
    /// A member's preference (or default) enables the category.
    UserPreference {
        /// The member.
        user_id: UserId,
    },
    /// A mandatory category to an ACTIVE member.
    Mandatory {
        /// The member.
        user_id: UserId,
    },
    /// Named by the caller.
    ExtraRecipient {
        /// The user, when given.
        user_id: Option<UserId>,
    },
}

/// Why a candidate was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// The contact's address is unverified.
    ContactEmailUnverified = 1,
    /// The extra recipient's user turned the category off.
    CategoryDisabled = 2,
    /// The extra recipient's user is not an ACTIVE member.
    MemberNotActive = 3,
    /// The member may not access the service.
    NoServiceAccess = 4,
}

/// One recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as first seen.
    pub email: String,
    /// The display name.
    pub name: String,
    /// Every reason, at least one.
    pub reasons: Vec<Reason>,
}

/// One candidate left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// The address.
    pub email: String,
    /// The contact, if a contact.
    pub contact_id: Option<ContactId>,
    /// The user, if a user.
    pub user_id: Option<UserId>,
    /// Why.
    pub reason: Exclusion,
}

/// The outcome of routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Recipients, ordered by normalised email.
    pub recipients: Vec<Recipient>,
    /// Candidates left out (not also included another way).
    pub excluded: Vec<Excluded>,
}

#[derive(Default)]
struct Entry {
    email: String,
    user_name: Option<String>,
    extra_name: Option<String>,
    contact_name: Option<String>,
    reasons: Vec<Reason>,
}

/// Decides who receives a notification of `category`: contacts by role,
/// ACTIVE `members` by preference (all of them for mandatory categories),
/// then the caller's extra recipients; deduplicated by normalised email.
pub fn resolve(
    category: Category,
    contacts: &[ContactCandidate],
    members: &[UserCandidate],
    user_extras: &[UserCandidate],
    plain_extras: &[PlainExtra],
) -> Resolution {
    resolve_with(category, &[], contacts, members, user_extras, plain_extras)
}

/// As [`resolve`], with the contacts chosen by `contact_roles` instead of
/// by the category when it is not empty (e.g. a support reply to the
/// TECHNICAL contacts only).
pub fn resolve_with(
    category: Category,
    contact_roles: &[Role],
    contacts: &[ContactCandidate],
    members: &[UserCandidate],
    user_extras: &[UserCandidate],
    plain_extras: &[PlainExtra],
) -> Resolution {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut excluded: Vec<(String, Excluded)> = Vec::new();
    fn add<'a>(
        entries: &'a mut BTreeMap<String, Entry>,
        email: &str,
        reason: Reason,
    ) -> &'a mut Entry {
        let entry = entries.entry(normalize(email)).or_insert_with(|| Entry {
            email: email.trim().to_owned(),
            ..Entry::default()
        });
        if !entry.reasons.contains(&reason) {
            entry.reasons.push(reason);
        }
        entry
    }

    for contact in contacts {
        let roles: Vec<Role> = contact
            .roles
            .iter()
            .copied()
            .filter(|r| {
                if contact_roles.is_empty() {
                    r.receives(category)
                } else {
                    contact_roles.contains(r)
                }
            })
            .collect();
        if roles.is_empty() {
            continue;
        }
        if !contact.verified {
            excluded.push((
                normalize(&contact.email),
                Excluded {
                    email: contact.email.clone(),
                    contact_id: Some(contact.id.clone()),
                    user_id: None,
                    reason: Exclusion::ContactEmailUnverified,
                },
            ));
            continue;
        }
        for role in roles {
            let entry = add(
                &mut entries,
                &contact.email,
                Reason::ContactRole {
                    contact_id: contact.id.clone(),
                    role,
                },
            );
            entry
                .contact_name
                .get_or_insert_with(|| contact.name.clone());
        }
    }

    let user_excluded = |user: &UserCandidate, reason| {
        (
            normalize(&user.email),
            Excluded {
                email: user.email.clone(),
                contact_id: None,
                user_id: Some(user.user_id.clone()),
                reason,
            },
        )
    };

    if category.routed_to_members() {
        for member in members.iter().filter(|m| m.active) {
            if !member_receives(category, member.choice) {
                continue;
            }
            if !member.service_access {
                excluded.push(user_excluded(member, Exclusion::NoServiceAccess));
                continue;
            }
            let user_id = member.user_id.clone();
            let reason = if category.is_mandatory() {
                Reason::Mandatory { user_id }
            } else {
                Reason::UserPreference { user_id }
            };
            let entry = add(&mut entries, &member.email, reason);
            entry.user_name.get_or_insert_with(|| member.name.clone());
        }
    }

    for user in user_extras {
        let exclusion = if !user.active {
            Some(Exclusion::MemberNotActive)
        } else if !member_receives(category, user.choice) {
            Some(Exclusion::CategoryDisabled)
        } else if !user.service_access {
            Some(Exclusion::NoServiceAccess)
        } else {
            None
        };
        if let Some(reason) = exclusion {
            excluded.push(user_excluded(user, reason));
            continue;
        }
        let entry = add(
            &mut entries,
            &user.email,
            Reason::ExtraRecipient {
                user_id: Some(user.user_id.clone()),
            },
        );
        entry.user_name.get_or_insert_with(|| user.name.clone());
    }

    for extra in plain_extras {
        let entry = add(
            &mut entries,
            &extra.email,
            Reason::ExtraRecipient { user_id: None },
        );
        if !extra.name.trim().is_empty() {
            entry
                .extra_name
                .get_or_insert_with(|| extra.name.trim().to_owned());
        }
    }

    let mut seen_excluded = std::collections::BTreeSet::new();
    let excluded = excluded
        .into_iter()
        .filter(|(norm, _)| !entries.contains_key(norm))
        .filter(|(_, e)| {
            seen_excluded.insert((e.email.clone(), e.contact_id.clone(), e.user_id.clone()))
        })
        .map(|(_, e)| e)
        .collect();
    let recipients = entries
        .into_values()
        .map(|e| Recipient {
            name: e
                .user_name
                .filter(|n| !n.is_empty())
                .or(e.extra_name)
                .or(e.contact_name)
                .unwrap_or_default(),
            email: e.email,
            reasons: e.reasons,
        })
        .collect();
    Resolution {
        recipients,
        excluded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, email: &str, roles: &[Role], verified: bool) -> ContactCandidate {
        ContactCandidate {
            id: ContactId::trusted(id),
            email: email.into(),
            name: format!("contact {id}"),
            roles: roles.to_vec(),
            verified,
        }
    }

    fn user(id: &str, email: &str, choice: Option<bool>) -> UserCandidate {
        UserCandidate {
            user_id: UserId::trusted(id),
            email: email.into(),
            name: format!("user {id}"),
            active: true,
            choice,
            service_access: true,
        }
    }

    #[test]
    fn roles_map_to_the_documented_categories() {
        use Category as C;
        let receives = |r: Role| -> Vec<Category> {
            CATEGORIES
                .iter()
                .copied()
                .filter(|c| r.receives(*c))
                .collect()
        };
        assert_eq!(
            receives(Role::Primary),
            [
                C::Billing,
                C::TechnicalIncidents,
                C::Maintenance,
                C::Security,
                C::Account,
                C::Abuse
            ]
        );
        assert_eq!(receives(Role::Billing), [C::Billing]);
        assert_eq!(
            receives(Role::Technical),
            [C::TechnicalIncidents, C::Maintenance]
        );
        assert_eq!(receives(Role::Emergency), [C::TechnicalIncidents]);
        assert_eq!(receives(Role::Abuse), [C::Abuse]);
    }

    #[test]
    fn security_is_mandatory_and_defaults_follow_the_contract() {
        assert!(member_receives(Category::Security, Some(false)));
        assert!(!member_receives(Category::Billing, None));
        assert!(!member_receives(Category::Abuse, None));
        assert!(member_receives(Category::Maintenance, None));
        assert!(!member_receives(Category::Maintenance, Some(false)));
        assert!(member_receives(Category::Billing, Some(true)));
    }

    #[test]
    fn recipients_are_deduplicated_by_normalised_email_with_every_reason() {
        let r = resolve(
            Category::Billing,
            &[contact(
                "c1",
                "Bob@Example.com",
                &[Role::Primary, Role::Billing],
                true,
            )],
            &[user("u1", " bob@example.COM", Some(true))],
            &[],
            &[PlainExtra {
                email: "BOB@example.com".into(),
                name: "B".into(),
            }],
        );
        assert_eq!(r.recipients.len(), 1);
        let bob = &r.recipients[0];
        assert_eq!(bob.email, "Bob@Example.com");
        assert_eq!(bob.name, "user u1");
        assert_eq!(bob.reasons.len(), 4);
    }

    #[test]
    fn unverified_contacts_and_disabled_or_inactive_extras_are_excluded_with_reasons() {
        let mut inactive = user("u3", "c@example.com", None);
        inactive.active = false;
        let r = resolve(
            Category::Maintenance,
            &[contact("c1", "a@example.com", &[Role::Technical], false)],
            &[],
            &[user("u2", "b@example.com", Some(false)), inactive],
            &[],
        );
        assert!(r.recipients.is_empty());
        let reasons: Vec<_> = r.excluded.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [
                Exclusion::ContactEmailUnverified,
                Exclusion::CategoryDisabled,
                Exclusion::MemberNotActive
            ]
        );
    }

    #[test]
    fn security_goes_to_every_active_member_even_if_switched_off() {
        let mut suspended = user("u3", "s@example.com", None);
        suspended.active = false;
        let r = resolve(
            Category::Security,
            &[],
            &[user("u1", "a@example.com", Some(false)), suspended],
            &[],
            &[],
        );
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(
            r.recipients[0].reasons,
            [Reason::Mandatory {
                user_id: UserId::trusted("u1")
            }]
        );
    }

    #[test]
    fn support_replies_go_only_to_extra_recipients() {
        let r = resolve(
            Category::SupportReplies,
            &[contact("c1", "p@example.com", &[Role::Primary], true)],
            &[user("u1", "a@example.com", None)],
            &[user("u2", "b@example.com", None)],
            &[],
        );
        let emails: Vec<_> = r.recipients.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails, ["b@example.com"]);
    }

    #[test]
    fn contact_roles_replace_the_categorys_choice_of_contacts() {
        let contacts = [
            contact("c1", "p@example.com", &[Role::Primary], true),
            contact("c2", "t@example.com", &[Role::Technical], true),
            contact("c3", "u@example.com", &[Role::Technical], false),
        ];
        let r = resolve_with(
            Category::SupportReplies,
            &[Role::Technical],
            &contacts,
            &[],
            &[user("u2", "b@example.com", None)],
            &[],
        );
        let emails: Vec<_> = r.recipients.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails, ["b@example.com", "t@example.com"]);
        assert_eq!(r.excluded[0].reason, Exclusion::ContactEmailUnverified);
    }

    #[test]
    fn members_without_service_access_are_left_out_but_contacts_are_not() {
        let mut member = user("u1", "a@example.com", None);
        member.service_access = false;
        let r = resolve(
            Category::TechnicalIncidents,
            &[contact("c1", "e@example.com", &[Role::Emergency], true)],
            &[member],
            &[],
            &[],
        );
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.excluded[0].reason, Exclusion::NoServiceAccess);
    }

    #[test]
    fn someone_excluded_on_one_path_but_included_on_another_is_only_a_recipient() {
        let r = resolve(
            Category::Billing,
            &[contact("c1", "a@example.com", &[Role::Billing], false)],
            &[user("u1", "A@example.com", Some(true))],
            &[],
            &[],
        );
        assert_eq!(r.recipients.len(), 1);
        assert!(r.excluded.is_empty());
    }
}
