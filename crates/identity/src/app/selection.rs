//! Which account a new portal token selects (LoginRequest.account_id): the
//! one the client named, if the user is an ACTIVE member of it; else the
//! one they last selected, if still so; else their earliest-joined ACTIVE
//! membership; else none.

use tenancy_proto::identity as pb;
use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};

use super::{App, Client};
use crate::domain::error::IdentityError;
use crate::store::users;

impl App {
    /// The account a new token of `user_id` selects when the client named
    /// none: `current` (the session's account, for RefreshSession) if the
    /// user is still an ACTIVE member with portal access there, else the
    /// account they last selected if so, else their earliest-joined such
    /// membership, else none. Err when the account service did not answer
    /// (callers decide: login goes on without an account, refresh keeps the
    /// session's).
    pub(crate) async fn default_account(
        &self,
        user_id: &str,
        current: Option<&str>,
    ) -> Result<Option<String>, IdentityError> {
        let last = users::last_account(&self.db, &UserId::trusted(user_id)).await?;
        let mut preferred: Vec<AccountId> = current.map(AccountId::trusted).into_iter().collect();
        preferred.extend(last.filter(|last| Some(last.as_str()) != current));
        Ok(self
            .accounts
            .default_account(&UserId::trusted(user_id), &preferred)
            .await?
            .map(AccountId::into_string))
    }

    /// [`App::default_account`] for a new session: without an answer from
    /// the account service the session starts with no account (logged).
    pub(crate) async fn login_account(&self, user_id: &str) -> Option<String> {
        self.default_account(user_id, None)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "login goes on without an account");
                None
            })
    }

    /// Refuses unless `user_id` is an ACTIVE member of `account_id` with
    /// portal access; a refusal is recorded in the login history (with the
    /// session, for SwitchAccount).
    pub(crate) async fn require_membership(
        &self,
        user_id: &str,
        account_id: &str,
        session_id: &str,
        client: &Client,
        method: pb::LoginMethod,
    ) -> Result<(), IdentityError> {
        let error = match self
            .accounts
            .is_active_member(&UserId::trusted(user_id), &AccountId::trusted(account_id))
            .await
        {
            Ok(true) => return Ok(()),
            Ok(false) => IdentityError::NotAMember,
            Err(error) => IdentityError::Service(error),
        };
        if Error::from(error.clone()).code() == tonic::Code::PermissionDenied {
            self.login_event(
                &self.db,
                user_id,
                account_id,
                session_id,
                client,
                method,
                pb::LoginOutcome::FailureAccountAccessDenied,
            )
            .await?;
        }
        Err(error)
    }
}
