//! Member changes: role, suspension, reactivation, revocation, leaving and
//! access scopes. Each is one transaction on the locked account that reads
//! the caller's membership once (under the lock, so a caller demoted a
//! moment ago is refused), applies the domain rules, writes the member,
//! its audit event and its policy-log entry, and queues the token
//! revocation in identity when the member loses access. New members
//! (AddMember, CreateApiMember) and API-member edits are written here too.

use tenancy_proto::identity::RevocationReason;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Principal};

use super::App;
use super::accounts::join_deadline;
use super::policy::{access_entry, member_json, membership_entry};
use crate::domain::AccountError;
use crate::domain::members::{self, LostAccess, MemberChange};
use crate::domain::owners::change_keeps_an_owner;
use crate::domain::{MemberStatus, Role, Scope};
use crate::peer_calls::{self, RevokeAccess};
use crate::store::{self, AccountRow, MemberRow};

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
            Some(peer_calls::enqueue(&txn, &call).await?)
        }
        None => None,
    };
    txn.commit().await?;
    app.policy_committed(account);
    if let Some(call) = revoke {
        // In a task of its own, so a caller hanging up cannot leave the
        // call waiting for its lease to run out.
        let calls = app.peer_calls.clone();
        let delivery = tokio::spawn(async move { calls.deliver(call).await });
        if let Err(error) = delivery.await {
            tracing::warn!(%error, "peer call delivery task failed; the worker retries");
        }
    }
    Ok(row)
}

/// A member just written, with what the owner's reply shows.
pub(crate) struct NewMember {
    /// The member.
    pub(crate) row: MemberRow,
    /// Its access scope.
    pub(crate) scope: Scope,
    /// Its account.
    pub(crate) account: AccountRow,
}

/// AddMember: a person added by an owner without an invitation (their user
/// made in identity first, under the name and email typed); no portal
/// access until they accept one. `scope` was validated at the edge.
/// MEMBER_EXISTS for a member who is not revoked.
pub(crate) async fn add_member(
    app: &App,
    actor: &Actor<'_>,
    email: &str,
    name: &str,
    role: Role,
    mut scope: Scope,
) -> Result<NewMember, Error> {
    let account_id = &actor.account_id;
    scope.portal_access = false;
    let (user, _) = app.peers.ensure_user(email, name).await?;
    let now = app.now();
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account_id).await?;
    if let Some(existing) = store::member(&txn, account_id, &user.id).await?
        && existing.status != MemberStatus::Revoked
    {
        return Err(AccountError::MemberExists.into());
    }
    let account = AccountRow::load(&txn, account_id)
        .await?
        .ok_or(AccountError::AccountNotFound)?;
    let row = MemberRow {
        account_id: account_id.clone(),
        user_id: user.id.clone(),
        role,
        status: MemberStatus::Active,
        portal_access: false,
        password_pending: !user.password_set,
        service_access: scope.service_access,
        join_time: now,
        update_time: now,
        // What the owner typed, never the user's own profile: they
        // have not accepted anything (issue 21 §3).
        name_key: name.to_lowercase(),
        email: email.to_owned(),
        mfa_deadline: join_deadline(&account, now),
        accepted: false,
        alias_id: UserId::new(),
        added_name: name.to_owned(),
        api: false,
        description: String::new(),
        source_allowlist: String::new(),
    };
    insert_member(app, txn, actor, "member.add", row, scope, account, now).await
}

/// What an owner gives a new API member (validated at the edge).
pub(crate) struct ApiMemberFields {
    /// Its name.
    pub(crate) name: String,
    /// What it is for.
    pub(crate) description: String,
    /// The source allowlist, stored form.
    pub(crate) source_allowlist: String,
}

/// CreateApiMember: the user in identity first (a failed transaction
/// after it leaves a user nobody can reach), then the membership: a
/// MANAGER without portal access. `scope` was validated at the edge.
pub(crate) async fn create_api_member(
    app: &App,
    actor: &Actor<'_>,
    fields: ApiMemberFields,
    scope: Scope,
) -> Result<NewMember, Error> {
    let account_id = &actor.account_id;
    let user = app.peers.create_api_user(account_id, &fields.name).await?;
    let now = app.now();
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account_id).await?;
    let account = AccountRow::load(&txn, account_id)
        .await?
        .ok_or(AccountError::AccountNotFound)?;
    let row = MemberRow {
        account_id: account_id.clone(),
        user_id: user.id.clone(),
        role: Role::Manager,
        status: MemberStatus::Active,
        portal_access: false,
        password_pending: false,
        service_access: scope.service_access,
        join_time: now,
        update_time: now,
        name_key: fields.name.to_lowercase(),
        email: String::new(),
        mfa_deadline: None,
        accepted: true,
        alias_id: user.id.clone(),
        added_name: fields.name,
        api: true,
        description: fields.description,
        source_allowlist: fields.source_allowlist,
    };
    let action = "member.create_api";
    insert_member(app, txn, actor, action, row, scope, account, now).await
}

/// Writes a new member of the actor's account — its row, grants, audit
/// entry `action` and policy entry — in `txn`, and commits.
#[allow(clippy::too_many_arguments)]
async fn insert_member(
    app: &App,
    txn: sea_orm::DatabaseTransaction,
    actor: &Actor<'_>,
    action: &str,
    row: MemberRow,
    scope: Scope,
    account: AccountRow,
    now: i64,
) -> Result<NewMember, Error> {
    row.upsert(&txn).await?;
    store::replace_grants(&txn, &row.account_id, &row.user_id, &scope).await?;
    app.audit(
        actor.principal,
        &actor.account_id,
        action,
        ("member", row.public_id().as_str()),
        None,
        Some(member_json(&row)),
    )
    .insert(&txn)
    .await?;
    store::append_policy(&txn, now, vec![membership_entry(&row)]).await?;
    txn.commit().await?;
    app.policy_committed(&row.account_id);
    Ok(NewMember {
        row,
        scope,
        account,
    })
}

/// What UpdateApiMember changes (`None`: left as is); validated at the
/// edge.
pub(crate) struct ApiMemberChange {
    /// A new name.
    pub(crate) name: Option<String>,
    /// A new description.
    pub(crate) description: Option<String>,
    /// A new source allowlist, stored form.
    pub(crate) source_allowlist: Option<String>,
}

/// UpdateApiMember: name, description and source allowlist of an API
/// member; a new allowlist reaches the gateways through the policy log.
pub(crate) async fn update_api_member(
    app: &App,
    actor: &Actor<'_>,
    target: &UserId,
    change: ApiMemberChange,
) -> Result<MemberRow, Error> {
    let account_id = &actor.account_id;
    let now = app.now();
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account_id).await?;
    let before = store::member_by_public_id(&txn, account_id, target)
        .await?
        .ok_or(AccountError::MemberNotFound)?;
    if !before.api {
        return Err(AccountError::ApiMemberRestricted(
            "not an API member: change people with the member methods",
        )
        .into());
    }
    if before.status == MemberStatus::Revoked {
        return Err(AccountError::MemberRevoked.into());
    }
    let mut row = before.clone();
    if let Some(name) = change.name {
        row.name_key = name.to_lowercase();
        row.added_name = name;
    }
    if let Some(description) = change.description {
        row.description = description;
    }
    if let Some(allowlist) = change.source_allowlist {
        row.source_allowlist = allowlist;
    }
    row.update_time = now;
    row.update_api(&txn).await?;
    app.audit(
        actor.principal,
        account_id,
        "member.update_api",
        ("member", row.public_id().as_str()),
        Some(member_json(&before)),
        Some(member_json(&row)),
    )
    .insert(&txn)
    .await?;
    store::append_policy(&txn, now, vec![membership_entry(&row)]).await?;
    txn.commit().await?;
    app.policy_committed(&row.account_id);
    Ok(row)
}
