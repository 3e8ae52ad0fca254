//! Who receives a notification of an account (ResolveRecipients), and
//! sending it to them (Notify): contacts by role, members by preference,
//! membership and service access (asked of account), users' addresses
//! (asked of identity). The decision itself is `domain::routing`.

use std::collections::{BTreeMap, HashMap};

use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};

use super::App;
use crate::domain::routing::{
    self, Category, ContactCandidate, PlainExtra, Resolution, Role, UserCandidate,
};
use crate::domain::templates::Template;
use crate::outbox::{Address, Email, Queued};
use crate::store::{contacts, preferences};

/// A recipient the caller names in addition to the routed ones.
pub(crate) struct ExtraRecipient {
    /// The user, when the caller names one (their name is looked up).
    pub(crate) user_id: Option<UserId>,
    /// The address (trimmed).
    pub(crate) email: String,
    /// The display name the caller gave.
    pub(crate) name: String,
}

/// A validated routing request.
pub(crate) struct Routing {
    /// The account notified.
    pub(crate) account: AccountId,
    /// What the notification is about.
    pub(crate) category: Category,
    /// The service it concerns (members need access to it), if any.
    pub(crate) service: Option<String>,
    /// Named recipients.
    pub(crate) extras: Vec<ExtraRecipient>,
    /// Contact roles replacing the category's (empty: the category's).
    pub(crate) contact_roles: Vec<Role>,
}

/// What Notify did.
pub(crate) struct Notified {
    /// The queued messages (a repeat's: the first call's).
    pub(crate) queued: Queued,
    /// Who was left out and why (empty for a repeat).
    pub(crate) excluded: Vec<routing::Excluded>,
}

/// ResolveRecipients: who would receive the notification, and who not.
pub(crate) async fn resolve(app: &App, r: &Routing) -> Result<Resolution, Error> {
    let peers = &app.peers;
    peers.check_account(&r.account).await?;
    let stored = contacts::all(&app.outbox.db, &r.account).await?;
    let contact_candidates: Vec<_> = stored
        .iter()
        .map(|c| ContactCandidate {
            id: c.id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
            roles: c.roles.clone(),
            verified: c.email_verified,
        })
        .collect();
    let active = peers.memberships(&r.account).await?;
    let choices: HashMap<UserId, bool> =
        preferences::for_category(&app.outbox.db, &r.account, r.category)
            .await?
            .into_iter()
            .map(|p| (p.user, p.enabled))
            .collect();
    let routed_members: Vec<UserId> = if r.category.routed_to_members() {
        active
            .iter()
            .filter(|(user, a)| {
                **a && routing::member_receives(r.category, choices.get(*user).copied())
            })
            .map(|(user, _)| user.clone())
            .collect()
    } else {
        Vec::new()
    };
    let mut wanted: Vec<UserId> = routed_members.clone();
    wanted.extend(r.extras.iter().filter_map(|e| e.user_id.clone()));
    wanted.sort();
    wanted.dedup();
    let users = peers.users(wanted).await?;
    let candidate = |user_id: &UserId, email: String, name: String| UserCandidate {
        user_id: user_id.clone(),
        email,
        name,
        active: active.get(user_id).copied().unwrap_or(false),
        choice: choices.get(user_id).copied(),
        service_access: true,
    };
    let mut members = Vec::new();
    for user_id in &routed_members {
        if let Some((email, name)) = users.get(user_id) {
            members.push(candidate(user_id, email.clone(), name.clone()));
        }
    }
    let mut user_extras = Vec::new();
    let mut plain = Vec::new();
    for e in &r.extras {
        match &e.user_id {
            None => plain.push(PlainExtra {
                email: e.email.clone(),
                name: e.name.clone(),
            }),
            Some(user_id) => {
                let name = users
                    .get(user_id)
                    .map(|(_, n)| n.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| e.name.clone());
                user_extras.push(candidate(user_id, e.email.clone(), name));
            }
        }
    }
    if let Some(service) = &r.service {
        let mut access: HashMap<UserId, bool> = HashMap::new();
        for u in members.iter_mut().chain(user_extras.iter_mut()) {
            if !u.active {
                continue;
            }
            let allowed = match access.get(&u.user_id) {
                Some(a) => *a,
                None => {
                    let a = peers
                        .service_access(&r.account, &u.user_id, service)
                        .await?;
                    access.insert(u.user_id.clone(), a);
                    a
                }
            };
            u.service_access = allowed;
        }
    }
    Ok(routing::resolve_with(
        r.category,
        &r.contact_roles,
        &contact_candidates,
        &members,
        &user_extras,
        &plain,
    ))
}

/// Notify: routes the notification and queues one message per recipient
/// under `key`; a repeat with the same content (`hash`) returns the first
/// call's messages without routing again.
pub(crate) async fn notify(
    app: &App,
    key: &str,
    hash: &str,
    routing: &Routing,
    template: Template,
    data: BTreeMap<String, String>,
) -> Result<Notified, Error> {
    if let Some(earlier) = app.outbox.earlier(key, hash).await? {
        return Ok(Notified {
            queued: earlier,
            excluded: Vec::new(),
        });
    }
    let resolution = resolve(app, routing).await?;
    let to: Vec<Address> = resolution
        .recipients
        .iter()
        .map(|rcpt| Address {
            email: rcpt.email.clone(),
            name: rcpt.name.clone(),
        })
        .collect();
    let email = Email {
        template,
        data,
        account_id: Some(routing.account.clone()),
        category: Some(routing.category),
    };
    let messages = app.outbox.render(&email, &to)?;
    let queued = app.outbox.enqueue(key, hash, messages).await?;
    let excluded = if queued.duplicate {
        Vec::new()
    } else {
        resolution.excluded
    };
    Ok(Notified { queued, excluded })
}
