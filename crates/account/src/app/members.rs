//! Member changes: role, suspension, reactivation, revocation, leaving and
//! access scopes. Each is one transaction on the locked account that reads
//! the caller's membership once (under the lock, so a caller demoted a
//! moment ago is refused), applies the domain rules, writes the member,
//! its audit event and its policy-log entry, and queues the token
//! revocation in identity when the member loses access.

use tenancy_proto::identity::RevocationReason;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Principal};

use super::App;
use super::policy::{access_entry, member_json, membership_entry};
use crate::domain::AccountError;
use crate::domain::members::{self, LostAccess, MemberChange};
use crate::domain::owners::change_keeps_an_owner;
use crate::domain::{Role, Scope};
use crate::peer_calls::{self, RevokeAccess};
use crate::store::{self, MemberRow};

/// Who calls: the principal (for the audit) and the membership it names.
pub(crate) struct Actor<'a> {
    /// The verified principal.
    pub(crate) principal: &'a Principal,
    /// Its user.
    pub(crate) user_id: UserId,
    /// The account it acts in.
    pub(crate) account_id: AccountId,
}

impl<'a> Actor<'a> {
    /// The actor of a principal acting in an account.
    pub(crate) fn of(principal: &'a Principal) -> Result<Self, Error> {
        Ok(Self {
            user_id: UserId::trusted(principal.user()?),
            account_id: AccountId::trusted(principal.account()?),
            principal,
        })
    }
}

/// What a change does to a member.
enum Change {
    /// Role or status.
    Membership(MemberChange),
    /// The access scope (with portal access and mode).
    Scope(Scope),
}

impl Change {
    fn action(&self) -> &'static str {
        match self {
            Self::Membership(c) => c.action(),
            Self::Scope(_) => "member.set_access",
        }
    }
}

/// ChangeMemberRole, SuspendMember, ReactivateMember, RevokeMember and
/// LeaveAccount (whose target is the caller): the member after the change.
pub(crate) async fn change_member(
    app: &App,
    actor: &Actor<'_>,
    target: &UserId,
    change: MemberChange,
) -> Result<MemberRow, Error> {
    apply(app, actor, target, Change::Membership(change)).await
}

/// SetMemberAccess: the member after the change. `scope` was validated at
/// the edge (its services exist in the account).
pub(crate) async fn set_member_access(
    app: &App,
    actor: &Actor<'_>,
    target: &UserId,
    scope: Scope,
) -> Result<MemberRow, Error> {
    apply(app, actor, target, Change::Scope(scope)).await
}

async fn apply(
    app: &App,
    actor: &Actor<'_>,
    target: &UserId,
    change: Change,
) -> Result<MemberRow, Error> {
    let account = &actor.account_id;
    let now = app.now();
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account).await?;
    let me = store::member(&txn, account, &actor.user_id).await?;
    let min_role = match &change {
        Change::Membership(c) => c.min_role(),
        Change::Scope(_) => Role::Owner,
    };
    members::check_caller(me.as_ref().map(MemberRow::caller_facts), min_role)?;
    let before = store::member_by_public_id(&txn, account, target)
        .await?
        .ok_or(AccountError::MemberNotFound)?;
    let target = &before.user_id;
    if let Change::Membership(c) = &change {
        c.check_target(*target == actor.user_id)?;
    }
    if before.api {
        match &change {
            Change::Membership(MemberChange::Role(Role::Owner)) => {
                return Err(AccountError::ApiMemberRestricted(
                    "an API member can never be an owner",
                )
                .into());
            }
            Change::Scope(wanted) if wanted.portal_access => {
                return Err(AccountError::ApiMemberRestricted(
                    "an API member never has portal access: it acts through its API tokens",
                )
                .into());
            }
            _ => {}
        }
    }
    let mut row = before.clone();
    let old_scope = store::scope(&txn, &before).await?;
    let new_scope = match &change {
        Change::Membership(c) => match c.apply(before.role, before.status)? {
            Some((role, status)) => {
                row.role = role;
                row.status = status;
                None
            }
            None => {
                txn.commit().await?;
                return Ok(row);
            }
        },
        Change::Scope(wanted) => {
            if before.status == crate::domain::MemberStatus::Revoked {
                return Err(AccountError::MemberRevoked.into());
            }
            if *wanted == old_scope {
                txn.commit().await?;
                return Ok(row);
            }
            row.portal_access = wanted.portal_access;
            row.service_access = wanted.service_access;
            Some(wanted)
        }
    };
    let owners = store::active_owners(&txn, account).await?;
    if !change_keeps_an_owner(before.owner_facts(), row.owner_facts(), owners) {
        return Err(AccountError::LastActiveOwner.into());
    }
    row.update_time = now;
    row.update(&txn).await?;
    let (before_json, after_json) = match new_scope {
        Some(scope) => {
            store::replace_grants(&txn, account, target, scope).await?;
            (
                serde_json::to_value(&old_scope).ok(),
                serde_json::to_value(scope).ok(),
            )
        }
        None => (Some(member_json(&before)), Some(member_json(&row))),
    };
    let action = change.action();
    app.audit(
        actor.principal,
        account,
        action,
        ("member", before.public_id().as_str()),
        before_json,
        after_json,
    )
    .insert(&txn)
    .await?;
    // Gateways follow role, status and portal access; a scope change
    // alone is logged for the access caches only.
    let policy_relevant = before.role != row.role
        || before.status != row.status
        || before.portal_access != row.portal_access;
    let entry = if policy_relevant {
        membership_entry(&row)
    } else {
        access_entry(account)
    };
    store::append_policy(&txn, now, vec![entry]).await?;
    // A member who loses access loses their API tokens for the account
    // in identity, for good: the call is written in this transaction
    // (see `crate::peer_calls`) so it cannot be forgotten.
    let lost = members::lost_access(
        (before.status, before.portal_access),
        (row.status, row.portal_access),
        matches!(change, Change::Membership(MemberChange::Leave)),
    );
    let revoke = match lost {
        Some(why) => {
            let reason = match why {
                LostAccess::Suspended => RevocationReason::MemberSuspended,
                LostAccess::Left => RevocationReason::MemberLeft,
                LostAccess::Revoked => RevocationReason::MemberRevoked,
            };
            let call = RevokeAccess::new(target, &actor.account_id, reason, now);
            let id = peer_calls::enqueue(&txn, &call).await?;
            Some((id, call))
        }
        None => None,
    };
    txn.commit().await?;
    app.policy_committed(account);
    if let Some((id, call)) = revoke {
        // In a task of its own, so a caller hanging up cannot leave the
        // call waiting for its lease to run out.
        let calls = app.peer_calls.clone();
        let delivery = tokio::spawn(async move { calls.deliver(&id, &call).await });
        if let Err(error) = delivery.await {
            tracing::warn!(%error, "peer call delivery task failed; the worker retries");
        }
    }
    Ok(row)
}
