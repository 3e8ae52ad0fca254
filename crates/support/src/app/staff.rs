//! The support team's work: the queue across granted accounts, assigning
//! tickets, and verifying a caller's code word. Every call is audited in
//! the account's log.

use std::collections::BTreeSet;

use tenancy_runtime::ids::{AccountId, TicketId, UserId};
use tenancy_runtime::{Error, Principal};

use super::App;
use crate::domain::{ActorKind, SupportError};
use crate::peers::{Audit, CodeWordOutcome};
use crate::store::list::{Accounts, Cursor, TicketQuery};
use crate::store::{NewMessage, Ticket};

/// ListQueue: tickets of `account` (which must have granted access) or of
/// every account with an active grant; the read is audited once per
/// account whose tickets were shown.
pub(crate) async fn queue(
    app: &App,
    p: &Principal,
    account: Option<AccountId>,
    mut query: TicketQuery,
) -> Result<(Vec<Ticket>, Option<Cursor>), Error> {
    query.accounts = match account {
        Some(a) => {
            app.require_grant(&a).await?;
            Accounts::One(a)
        }
        None => Accounts::Many(app.peers.granted_accounts().await?),
    };
    if matches!(&query.accounts, Accounts::Many(a) if a.is_empty()) {
        return Ok((Vec::new(), None));
    }
    let (tickets, next) = app.store.list_tickets(&query).await?;
    let shown: BTreeSet<&AccountId> = tickets.iter().map(|t| &t.account_id).collect();
    for account_id in shown {
        app.audit_staff(p, account_id, "ticket.list", "", None)
            .await?;
    }
    Ok((tickets, next))
}

/// AssignTicket: to a member of the support team (or the caller), or to
/// nobody; with `only_if_unassigned`, refused when someone else holds it.
pub(crate) async fn assign(
    app: &App,
    p: &Principal,
    ticket_id: &TicketId,
    assignee: Option<UserId>,
    only_if_unassigned: bool,
) -> Result<Ticket, Error> {
    let me = p.user()?;
    let ticket = app.staff_ticket(None, ticket_id).await?;
    if let Some(a) = assignee.as_ref().filter(|a| a.as_str() != me) {
        let users = app.peers.users(vec![a.clone()]).await?;
        if !users.iter().any(|u| u.staff) {
            return Err(SupportError::AssigneeNotStaff.into());
        }
    }
    let after = app
        .store
        .assign(&ticket.id, assignee, only_if_unassigned)
        .await?;
    app.audit_staff(
        p,
        &ticket.account_id,
        "ticket.assign",
        ticket.id.as_str(),
        None,
    )
    .await?;
    Ok(after)
}

/// What VerifyCaller checks.
pub(crate) struct CallerCheck {
    /// The account the caller says they belong to.
    pub(crate) account: AccountId,
    /// The user they say they are.
    pub(crate) user: UserId,
    /// What they said.
    pub(crate) code_word: String,
    /// The ticket the call is about (its id as given, for the audit log).
    pub(crate) ticket: Option<(TicketId, String)>,
}

/// VerifyCaller: under the account's active support-access grant (always,
/// with or without a ticket), checks a caller's code word (identity),
/// audited in the account's log; on a ticket a system note records the
/// outcome.
pub(crate) async fn verify_caller(
    app: &App,
    p: &Principal,
    check: CallerCheck,
) -> Result<CodeWordOutcome, Error> {
    let staff = UserId::trusted(p.user()?);
    let CallerCheck {
        account,
        user,
        code_word,
        ticket,
    } = check;
    let ticket_text = ticket
        .as_ref()
        .map(|(_, raw)| raw.clone())
        .unwrap_or_default();
    // Without the account's grant nothing is looked at, not even whether
    // the user is a member (and no attempt of the user's allowance used).
    app.require_grant(&account).await?;
    let ticket = match &ticket {
        None => None,
        Some((id, _)) => {
            let t = app
                .store
                .ticket(id)
                .await?
                .ok_or(SupportError::TicketNotFound)?;
            if t.account_id != account {
                return Err(SupportError::TicketAccountMismatch.into());
            }
            Some(t)
        }
    };
    if !app.peers.is_member(&user, &account).await? {
        return Err(SupportError::MemberNotFound.into());
    }
    let outcome = app
        .peers
        .verify_code_word(&user, code_word, &staff, &account)
        .await?;
    let label = outcome.label();
    app.peers
        .audit(Audit {
            principal: p,
            account_id: &account,
            action: "member.verify_caller",
            target_type: "member",
            target_id: user.as_str(),
            after: vec![("outcome", label.to_owned()), ("ticket_id", ticket_text)],
            idempotency_key: None,
        })
        .await?;
    if let Some(t) = ticket {
        app.store
            .add_message(
                &t.id,
                NewMessage {
                    author_kind: ActorKind::System,
                    author_user_id: None,
                    body: format!("Caller verification for user {user} by staff {staff}: {label}"),
                    internal: true,
                },
                Ok,
                None,
                app.clock.now(),
            )
            .await?;
    }
    Ok(outcome)
}
