//! Members' notification preferences: one's own, or any member's for an
//! OWNER.

use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};

use super::App;
use crate::domain::ContactsError;
use crate::domain::routing::{CATEGORIES, Category, member_receives};
use crate::store::preferences as store;

/// Who asks, from the verified principal.
pub(crate) struct Caller {
    /// The selected account.
    pub(crate) account: AccountId,
    /// The caller.
    pub(crate) user: UserId,
    /// Whether the caller is an OWNER of the account.
    pub(crate) is_owner: bool,
}

/// A member's effective preferences.
pub(crate) struct Preferences {
    /// The account.
    pub(crate) account: AccountId,
    /// The member.
    pub(crate) user: UserId,
    /// Every category: (category, receives, locked).
    pub(crate) entries: Vec<(Category, bool, bool)>,
    /// When a choice was last stored (Unix ms), if ever.
    pub(crate) update_time: Option<i64>,
}

/// The member a request is about, after the access rule: oneself (`other`
/// is `None`), or another member for an OWNER.
async fn subject(app: &App, caller: &Caller, other: Option<UserId>) -> Result<UserId, Error> {
    let Some(user) = other else {
        return Ok(caller.user.clone());
    };
    if !caller.is_owner {
        return Err(ContactsError::OwnerOnly.into());
    }
    if !app.peers.is_member(&caller.account, &user).await? {
        return Err(ContactsError::MemberNotFound.into());
    }
    Ok(user)
}

async fn read(app: &App, account: &AccountId, user: UserId) -> Result<Preferences, Error> {
    let stored = store::get(&app.outbox.db, account, &user).await?;
    let update_time = stored.iter().map(|s| s.updated_at).max();
    let entries = CATEGORIES
        .iter()
        .map(|c| {
            let choice = stored.iter().find(|s| s.category == *c).map(|s| s.enabled);
            (*c, member_receives(*c, choice), c.is_mandatory())
        })
        .collect();
    Ok(Preferences {
        account: account.clone(),
        user,
        entries,
        update_time,
    })
}

/// GetNotificationPreferences.
pub(crate) async fn get(
    app: &App,
    caller: &Caller,
    other: Option<UserId>,
) -> Result<Preferences, Error> {
    let user = subject(app, caller, other).await?;
    read(app, &caller.account, user).await
}

/// UpdateNotificationPreferences: stores `choices` (categories that may be
/// switched off) in one transaction, then answers the result.
pub(crate) async fn update(
    app: &App,
    caller: &Caller,
    other: Option<UserId>,
    choices: &[(Category, bool)],
) -> Result<Preferences, Error> {
    let user = subject(app, caller, other).await?;
    if !choices.is_empty() {
        store::set(
            &app.outbox.db,
            &caller.account,
            &user,
            choices,
            app.outbox.clock.now(),
        )
        .await?;
    }
    read(app, &caller.account, user).await
}
