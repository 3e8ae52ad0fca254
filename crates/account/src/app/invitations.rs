//! Invitations: InviteMember, the invitation SetMemberAccess sends to a
//! member added without a password, ResendInvitation (owner's and
//! operator's), CancelInvitation and AcceptInvitation. Each writes the
//! invitation and its audit event in one transaction on the locked
//! account (AcceptInvitation also the member and its policy-log entry);
//! the link is emailed after the commit.

use std::collections::HashMap;
use std::time::Duration;

use tenancy_proto::account::ActorKind;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{AccountId, InvitationId, ServiceId, UserId};
use tenancy_runtime::secret::SecretToken;
use tenancy_runtime::{Error, Principal};

use super::App;
use super::members::Actor;
use super::policy::{member_json, membership_entry, role_name};
use crate::domain::{AccountError, InvitationState, MemberStatus, Role, Scope, validate};
use crate::peers::UserInfo;
use crate::store::{self, AccountRow, CloseAs, InvitationRow, MemberRow};

/// How long an invitation link works.
pub(crate) const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// The shortest time between two sends of one invitation.
const RESEND_INTERVAL_MS: i64 = 60 * 1000;

/// A new PENDING invitation of `account_id` to `email`, sent once at `now`
/// by `inviter`, with a fresh link token.
#[allow(clippy::too_many_arguments)]
fn pending(
    account_id: &AccountId,
    email: &str,
    role: Role,
    scope: Scope,
    token: &SecretToken,
    inviter: &UserId,
    user_id: &UserId,
    for_existing_member: bool,
    now: i64,
) -> InvitationRow {
    InvitationRow {
        id: InvitationId::new(),
        account_id: account_id.clone(),
        email: email.to_owned(),
        role,
        scope,
        state: InvitationState::Pending,
        token_hash: token.hash(),
        create_time: now,
        expire_time: now + INVITATION_TTL_MS,
        invited_by: inviter.clone(),
        send_time: now,
        send_count: 1,
        close_time: None,
        user_id: Some(user_id.clone()),
        for_existing_member,
    }
}

/// The sort key of an invitee's name: theirs, or the one they give when
/// accepting creates them.
fn name_key(user: &UserInfo, given: &str) -> String {
    if user.name.is_empty() {
        given.trim().to_lowercase()
    } else {
        user.name.to_lowercase()
    }
}

/// Emails the invitation link; the email names `inviter`.
async fn send_invitation(
    app: &App,
    inv: &InvitationRow,
    token: &SecretToken,
    inviter: &UserId,
) -> Result<(), Error> {
    let account = AccountRow::load(&app.db, &inv.account_id).await?;
    let inviter_name = app
        .users_or_empty(&[inviter.to_owned()])
        .await
        .remove(inviter)
        .map(|u| if u.name.is_empty() { u.email } else { u.name })
        .unwrap_or_default();
    let portal = app.config.mail.portal_url.trim_end_matches('/');
    let data = HashMap::from([
        (
            "account_name".to_owned(),
            account.map(|a| a.name).unwrap_or_default(),
        ),
        ("inviter_name".to_owned(), inviter_name),
        ("role".to_owned(), role_name(inv.role).to_owned()),
        (
            "accept_url".to_owned(),
            format!("{portal}/accept-invitation?token={}", token.expose()),
        ),
        ("expire_time".to_owned(), super::rfc3339(inv.expire_time)),
    ]);
    app.peers
        .send_email(
            format!("account:invitation:{}:{}", inv.id, inv.send_count),
            (&inv.email, ""),
            MessageTemplate::Invitation,
            data,
            inv.account_id.as_str(),
        )
        .await
}

/// Sends a new invitation, or withdraws it when the email cannot be sent
/// (contacts unreachable): the caller gets the error (UNAVAILABLE) and a
/// retry makes a new invitation instead of meeting INVITATION_PENDING for
/// one whose link nobody received. If the withdrawal fails too (the
/// database is down as well), the invitation stays pending and
/// ResendInvitation sends it.
async fn send_or_withdraw(
    app: &App,
    actor: &Actor<'_>,
    inv: &InvitationRow,
    token: &SecretToken,
) -> Result<(), Error> {
    let Err(error) = send_invitation(app, inv, token, &actor.user_id).await else {
        return Ok(());
    };
    if let Err(withdraw) = withdraw(app, actor, inv).await {
        tracing::warn!(invitation = %inv.id, error = %withdraw, "unsent invitation not withdrawn; ResendInvitation sends it");
    }
    Err(error)
}

/// Cancels the unsent invitation `inv`, audited.
async fn withdraw(app: &App, actor: &Actor<'_>, inv: &InvitationRow) -> Result<(), Error> {
    cancel(app, actor, inv, app.now(), Some("email not sent")).await?;
    Ok(())
}

/// Cancels `inv` at `now` if it is still pending, audited in the same
/// transaction (`reason` in the audit's details); false when it was not
/// pending any more.
async fn cancel(
    app: &App,
    actor: &Actor<'_>,
    inv: &InvitationRow,
    now: i64,
    reason: Option<&str>,
) -> Result<bool, Error> {
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, &inv.account_id).await?;
    let cancelled = store::cancel_invitation(&txn, &inv.id, now).await?;
    if cancelled {
        app.audit(
            actor.principal,
            &inv.account_id,
            "invitation.cancel",
            ("invitation", inv.id.as_str()),
            None,
            reason.map(|reason| serde_json::json!({ "reason": reason })),
        )
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(cancelled)
}

/// InviteMember: the invitation sent to `email` (its user made in identity
/// first). `scope` was validated at the edge; the invitee gets portal
/// access. MEMBER_EXISTS for a member who is not revoked,
/// INVITATION_PENDING while another unexpired invitation for the email is.
pub(crate) async fn invite_member(
    app: &App,
    actor: &Actor<'_>,
    email: &str,
    role: Role,
    mut scope: Scope,
) -> Result<InvitationRow, Error> {
    let account = &actor.account_id;
    scope.portal_access = true;
    let (user, _) = app.peers.ensure_user(email, "").await?;
    let now = app.now();
    let token = SecretToken::generate("tni_");
    let inv = pending(
        account,
        email,
        role,
        scope,
        &token,
        &actor.user_id,
        &user.id,
        false,
        now,
    );
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account).await?;
    if let Some(m) = store::member(&txn, account, &user.id).await?
        && m.status != MemberStatus::Revoked
    {
        return Err(AccountError::MemberExists.into());
    }
    // An expired invitation no longer blocks a new one.
    store::close_pending_invitations(&txn, account, email, now, CloseAs::Expired).await?;
    if let Err(e) = inv.insert(&txn).await {
        if tenancy_runtime::db::is_unique_violation(&e) {
            return Err(AccountError::InvitationPending.into());
        }
        return Err(e.into());
    }
    app.audit(
        actor.principal,
        account,
        "member.invite",
        ("invitation", inv.id.as_str()),
        None,
        Some(serde_json::json!({"email": email, "role": role_name(inv.role)})),
    )
    .insert(&txn)
    .await?;
    txn.commit().await?;
    send_or_withdraw(app, actor, &inv, &token).await?;
    Ok(inv)
}

/// The invitation for `member`, added without a password, sent when an
/// owner gives them portal access; it replaces their pending ones.
pub(crate) async fn invite_existing_member(
    app: &App,
    actor: &Actor<'_>,
    member: &MemberRow,
) -> Result<InvitationRow, Error> {
    let now = app.now();
    let token = SecretToken::generate("tni_");
    let mut scope = store::scope(&app.db, member).await?;
    scope.portal_access = true;
    let email = if member.email.is_empty() {
        app.peers
            .users(std::slice::from_ref(&member.user_id))
            .await?
            .remove(&member.user_id)
            .map(|u| u.email)
            .unwrap_or_default()
    } else {
        member.email.clone()
    };
    // The member's id as the owner sees it (the stand-in until they
    // accept); AcceptInvitation resolves it.
    let inv = pending(
        &member.account_id,
        &email,
        member.role,
        scope,
        &token,
        &actor.user_id,
        member.public_id(),
        true,
        now,
    );
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, &member.account_id).await?;
    store::close_pending_invitations(&txn, &member.account_id, &email, now, CloseAs::Cancelled)
        .await?;
    inv.insert(&txn).await?;
    app.audit(
        actor.principal,
        &member.account_id,
        "member.invite",
        ("invitation", inv.id.as_str()),
        None,
        Some(
            serde_json::json!({"email": email, "role": role_name(inv.role), "portal_access": true}),
        ),
    )
    .insert(&txn)
    .await?;
    txn.commit().await?;
    send_or_withdraw(app, actor, &inv, &token).await?;
    Ok(inv)
}

/// The invitation `id` (of `account_id`, when given); INVITATION_NOT_FOUND
/// otherwise.
pub(crate) async fn invitation(
    app: &App,
    id: &InvitationId,
    account_id: Option<&AccountId>,
) -> Result<InvitationRow, Error> {
    Ok(store::invitation(&app.db, id, account_id)
        .await?
        .ok_or(AccountError::InvitationNotFound)?)
}

/// ResendInvitation (and the operator's): sends `inv` again with a new
/// link, at most once a minute, audited as `principal`'s; the email names
/// `inviter` (for an operator, the member who invited).
pub(crate) async fn resend_invitation(
    app: &App,
    mut inv: InvitationRow,
    principal: &Principal,
    inviter: &UserId,
) -> Result<InvitationRow, Error> {
    let now = app.now();
    match inv.state {
        InvitationState::Accepted => return Err(AccountError::InvitationUsed.into()),
        InvitationState::Cancelled => return Err(AccountError::InvitationCancelled.into()),
        _ => {}
    }
    if inv.send_time + RESEND_INTERVAL_MS > now {
        let wait = u64::try_from(inv.send_time + RESEND_INTERVAL_MS - now).unwrap_or(0);
        return Err(AccountError::InvitationResendTooSoon {
            wait: Duration::from_millis(wait),
        }
        .into());
    }
    let token = SecretToken::generate("tni_");
    let before_state = inv.effective_state(now);
    inv.state = InvitationState::Pending;
    inv.token_hash = token.hash();
    inv.expire_time = now + INVITATION_TTL_MS;
    inv.send_time = now;
    inv.send_count += 1;
    inv.close_time = None;
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, &inv.account_id).await?;
    match store::renew_invitation(&txn, &inv).await {
        Ok(true) => {}
        Ok(false) => return Err(AccountError::InvitationUsed.into()),
        Err(e) if tenancy_runtime::db::is_unique_violation(&e) => {
            return Err(AccountError::InvitationPending.into());
        }
        Err(e) => return Err(e.into()),
    }
    app.audit(
        principal,
        &inv.account_id,
        "invitation.resend",
        ("invitation", inv.id.as_str()),
        Some(serde_json::json!({"state": before_state.code()})),
        Some(serde_json::json!({"send_count": inv.send_count})),
    )
    .insert(&txn)
    .await?;
    txn.commit().await?;
    send_invitation(app, &inv, &token, inviter).await?;
    Ok(inv)
}

/// CancelInvitation: the invitation, cancelled (already cancelled ones as
/// they are); INVITATION_USED once accepted.
pub(crate) async fn cancel_invitation(
    app: &App,
    actor: &Actor<'_>,
    mut inv: InvitationRow,
) -> Result<InvitationRow, Error> {
    let now = app.now();
    match inv.state {
        InvitationState::Accepted => return Err(AccountError::InvitationUsed.into()),
        InvitationState::Cancelled => return Ok(inv),
        _ => {}
    }
    if !cancel(app, actor, &inv, now, None).await? {
        return Err(AccountError::InvitationUsed.into());
    }
    inv.state = InvitationState::Cancelled;
    inv.close_time = Some(now);
    Ok(inv)
}

/// What AcceptInvitation did.
pub(crate) struct Accepted {
    /// The account joined.
    pub(crate) account_id: AccountId,
    /// The invitee's user.
    pub(crate) user_id: UserId,
    /// Their role.
    pub(crate) role: Role,
    /// Whether accepting created the user (set its password and name).
    pub(crate) user_created: bool,
}

/// AcceptInvitation by whoever holds the link `token` (checked for size at
/// the edge): makes (or completes) the invitee's membership. A new user
/// gets `name` (when identity has none) and `password`, which are
/// required then.
pub(crate) async fn accept_invitation(
    app: &App,
    principal: &Principal,
    token: String,
    name: &str,
    password: &str,
) -> Result<Accepted, Error> {
    let hash = SecretToken::from_client(token).hash();
    let inv = store::invitation_by_token(&app.db, &hash)
        .await?
        .ok_or(AccountError::InvitationNotFound)?;
    // The lookup is by hash of a 256-bit token; compare once more in
    // constant time for good measure.
    if !tenancy_runtime::secret::constant_time_eq(inv.token_hash.as_bytes(), hash.as_bytes()) {
        return Err(AccountError::InvitationNotFound.into());
    }
    let now = app.now();
    match inv.effective_state(now) {
        InvitationState::Accepted => return Err(AccountError::InvitationUsed.into()),
        InvitationState::Cancelled => return Err(AccountError::InvitationCancelled.into()),
        InvitationState::Expired => return Err(AccountError::InvitationExpired.into()),
        InvitationState::Pending => {}
    }
    // The invitee's user, created at invitation time (for a member
    // who was added, the invitation names the member's stand-in id).
    let user_id = match &inv.user_id {
        Some(id) if inv.for_existing_member => {
            store::member_by_public_id(&app.db, &inv.account_id, id)
                .await?
                .map(|m| m.user_id)
        }
        Some(id) => Some(id.clone()),
        None => None,
    };
    let user = match user_id {
        Some(id) => app
            .peers
            .users(std::slice::from_ref(&id))
            .await?
            .remove(&id),
        None => None,
    };
    let user = match user {
        Some(u) => u,
        None => app.peers.ensure_user(&inv.email, "").await?.0,
    };
    let user_created = !user.password_set;
    if user_created {
        let mut v = Violations::default();
        let name = if user.name.is_empty() {
            v.take("name", validate::text(name, 1, 100))
        } else {
            Some(String::new())
        };
        v.check(!password.is_empty(), "password", "required");
        v.finish()?;
        app.peers
            .set_initial_password(user.id.as_str(), password, &name.unwrap_or_default())
            .await?;
    }
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, &inv.account_id).await?;
    if !store::claim_invitation(&txn, &inv.id, &hash, now, &user.id).await? {
        return Err(AccountError::InvitationUsed.into());
    }
    let account = AccountRow::load(&txn, &inv.account_id)
        .await?
        .ok_or(AccountError::InvitationNotFound)?;
    let existing = store::member(&txn, &inv.account_id, &user.id).await?;
    let row = match existing {
        Some(mut m) if m.status != MemberStatus::Revoked => {
            if !(inv.for_existing_member && m.status == MemberStatus::Active) {
                return Err(AccountError::AlreadyMember.into());
            }
            m.portal_access = true;
            m.password_pending = false;
            m.update_time = now;
            // Their own action: from now on the API shows them as
            // they are.
            m.accepted = true;
            m.name_key = name_key(&user, name);
            m.email = inv.email.clone();
            m.update(&txn).await?;
            m
        }
        _ => {
            let mut scope = inv.scope.clone();
            let ids: Vec<ServiceId> = scope
                .selected
                .iter()
                .chain(scope.resources.iter().map(|(id, _)| id))
                .cloned()
                .collect();
            let live = store::existing_services(&txn, &inv.account_id, &ids).await?;
            scope.selected.retain(|id| live.contains(id));
            scope.resources.retain(|(id, _)| live.contains(id));
            let m = MemberRow {
                account_id: inv.account_id.clone(),
                user_id: user.id.clone(),
                role: inv.role,
                status: MemberStatus::Active,
                portal_access: true,
                password_pending: false,
                service_access: scope.service_access,
                join_time: now,
                update_time: now,
                name_key: name_key(&user, name),
                email: inv.email.clone(),
                mfa_deadline: super::accounts::join_deadline(&account, now),
                accepted: true,
                alias_id: user.id.clone(),
                added_name: String::new(),
                api: false,
                description: String::new(),
                source_allowlist: String::new(),
            };
            m.upsert(&txn).await?;
            store::replace_grants(&txn, &m.account_id, &m.user_id, &scope).await?;
            m
        }
    };
    let mut audit = app.audit(
        principal,
        &inv.account_id,
        "invitation.accept",
        ("invitation", inv.id.as_str()),
        None,
        Some(member_json(&row)),
    );
    audit.actor_kind = ActorKind::User as i32;
    audit.actor_id = user.id.to_string();
    audit.actor_display_name = inv.email.clone();
    audit.insert(&txn).await?;
    store::append_policy(&txn, now, vec![membership_entry(&row)]).await?;
    txn.commit().await?;
    app.policy_committed(&inv.account_id);
    Ok(Accepted {
        account_id: inv.account_id,
        user_id: user.id,
        role: row.role,
        user_created,
    })
}
