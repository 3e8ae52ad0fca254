//! Staff grants, usage reports from gateways, password change.

use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity as pb;
use tenancy_runtime::ids::UserId;
use tenancy_runtime::{Timestamp, ids};

use super::App;
use super::revocations::Revocation;
use super::sessions::AccessToken;
use crate::domain::admin::{AdminAction, AdminEvent, Operator, SHOWN_EVENTS};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::{check_new_password, normalise};
use crate::domain::profile::{parse_email, truncate_user_agent};
use crate::domain::throttle::Counter;
use crate::store;
use crate::store::email_tokens::Purpose;
use crate::store::login_events::{self, LoginEventRow};
use crate::store::sessions::SessionListing;
use crate::store::users::UserRow;
use crate::store::{code_words, sessions, users};

/// Failed code-word checks a user's word allows an hour.
const CODE_WORD_FAILURES_PER_HOUR: i64 = 5;

/// The answer of a code-word check.
pub(crate) struct CodeWordCheck {
    /// Whether the word matched.
    pub(crate) matched: bool,
    /// Whether the user has a code word.
    pub(crate) set: bool,
    /// Failed checks left this hour.
    pub(crate) remaining_attempts: i64,
}

/// A gateway's report that an API token or a session was used.
pub(crate) struct Usage<'a> {
    /// The token or session.
    pub(crate) id: &'a str,
    /// When it was last used (Unix ms).
    pub(crate) time: i64,
    /// From where.
    pub(crate) ip: &'a str,
    /// By which client (sessions only).
    pub(crate) user_agent: &'a str,
}

impl App {
    /// Records operator action `action` by `by` on `user` in `tx` (the
    /// action's own transaction), with `detail` (never a secret).
    pub(crate) async fn audit_admin<C: sea_orm::ConnectionTrait>(
        &self,
        tx: &C,
        by: &Operator,
        action: AdminAction,
        user: Option<&str>,
        detail: String,
    ) -> Result<(), IdentityError> {
        let event = AdminEvent {
            time: self.now().millis(),
            caller: by.caller.clone(),
            request_id: by.request_id.clone(),
            action: action.as_str().to_owned(),
            user_id: user.map(UserId::trusted),
            detail,
        };
        store::admin_audit::insert(tx, &event).await?;
        Ok(())
    }

    /// GrantStaff / RevokeStaff (idempotent; audited either way, with
    /// whether it changed anything).
    pub(crate) async fn set_staff(
        &self,
        by: &Operator,
        email: &str,
        staff: bool,
    ) -> Result<UserRow, IdentityError> {
        let email = parse_email("email", email)?;
        let user = self
            .user_by_email(&self.db, &email)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        let tx = crate::store::begin(&self.db).await?;
        let changed = users::set_staff(&tx, &user.id, staff, self.now().millis()).await?;
        if changed && !staff {
            self.append_revocation(
                &tx,
                Revocation::UserTokensBefore {
                    user_id: user.id.clone(),
                },
                pb::RevocationReason::StaffRevoked,
            )
            .await?;
        }
        let action = if staff {
            AdminAction::GrantStaff
        } else {
            AdminAction::RevokeStaff
        };
        self.audit_admin(
            &tx,
            by,
            action,
            Some(&user.id),
            format!("changed={changed}"),
        )
        .await?;
        tx.commit().await?;
        self.notify_revocations();
        self.get_user(&user.id).await
    }

    /// The user an operator command names, by id or by email: refuses a
    /// malformed one with its field, an unknown one with USER_NOT_FOUND.
    pub(crate) async fn named_user(
        &self,
        user: Option<UserRef<'_>>,
    ) -> Result<UserRow, IdentityError> {
        let found = match user {
            Some(UserRef::Id(id)) => self.load_user(&self.db, id.as_str()).await?,
            Some(UserRef::Email(email)) => {
                self.user_by_email(&self.db, &parse_email("email", email)?)
                    .await?
            }
            None => {
                return Err(IdentityError::invalid(
                    Invalid::UserId,
                    "user_id",
                    "name the user by user_id or email",
                ));
            }
        };
        found.ok_or(IdentityError::UserNotFound)
    }

    /// DescribeUser: the user, their live sessions and the newest
    /// operator actions on them (no secrets).
    pub(crate) async fn describe_user(
        &self,
        user: Option<UserRef<'_>>,
    ) -> Result<(UserRow, Vec<SessionListing>, Vec<AdminEvent>), IdentityError> {
        let user = self.named_user(user).await?;
        // The newest 500 (staff see the user's recent devices).
        let (sessions, _) = self
            .list_sessions(&user.id, None, tenancy_runtime::ids::MAX_PAGE_SIZE, "")
            .await?;
        let id = UserId::trusted(user.id.as_str());
        let audit = store::admin_audit::for_user(&self.db, &id, SHOWN_EVENTS).await?;
        Ok((user, sessions, audit))
    }

    /// UnlockLogin: clears the back-off of every (email, address) pair and
    /// the per-email cap of password logins (see `login`'s keys). Returns
    /// the user and how many counters were cleared.
    pub(crate) async fn unlock_login(
        &self,
        by: &Operator,
        email: &str,
    ) -> Result<(UserRow, i32), IdentityError> {
        let email = parse_email("email", email)?;
        let user = self
            .user_by_email(&self.db, &email)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        // `pw:{key}|{ip}` for every address; compared by prefix without
        // LIKE, whose wildcards an email may contain (`_`).
        let pairs = format!("pw:{}|", email.key);
        let tx = crate::store::begin(&self.db).await?;
        let cleared =
            store::throttle::clear_with_prefix(&tx, &format!("pwe:{}", email.key), &pairs).await?;
        let action = AdminAction::UnlockLogin;
        self.audit_admin(
            &tx,
            by,
            action,
            Some(&user.id),
            format!("cleared={cleared}"),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            event = action.as_str(),
            request_id = %by.request_id,
            caller = "operator",
            user_id = %user.id,
            cleared,
            "an operator unlocked the user's logins"
        );
        Ok((user, i32::try_from(cleared).unwrap_or(i32::MAX)))
    }

    /// EndUserSessions: ends every open session of the user, one
    /// revocation event each (as RevokeSession), in one transaction.
    pub(crate) async fn end_user_sessions(
        &self,
        by: &Operator,
        user: Option<UserRef<'_>>,
    ) -> Result<(UserRow, i64), IdentityError> {
        let user = self.named_user(user).await?;
        let tx = crate::store::begin(&self.db).await?;
        let sessions = sessions::open_ids(&tx, &user.id, None, None).await?;
        let ended = self
            .end_sessions(
                &tx,
                &sessions,
                &user.id,
                pb::RevocationReason::RevokedByOperator,
            )
            .await?;
        let action = AdminAction::EndSessions;
        self.audit_admin(&tx, by, action, Some(&user.id), format!("ended={ended}"))
            .await?;
        tx.commit().await?;
        self.notify_revocations();
        tracing::info!(
            event = action.as_str(),
            request_id = %by.request_id,
            caller = "operator",
            user_id = %user.id,
            ended,
            "an operator ended the user's sessions"
        );
        Ok((user, ended))
    }

    /// RecordUsage: newer times only; unknown ids ignored; one transaction.
    /// A session's activity also moves its idle expiry
    /// (`auth.session_idle_timeout` after the activity, never beyond its
    /// lifetime, never backwards), unless the session had already ended by
    /// then: activity reported late never revives it.
    pub(crate) async fn record_usage(
        &self,
        tokens: &[Usage<'_>],
        sessions_seen: &[Usage<'_>],
    ) -> Result<(), IdentityError> {
        let idle = i64::try_from(self.auth.session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
        let tx = crate::store::begin(&self.db).await?;
        for u in tokens {
            store::api_tokens::record_use(&tx, u.id, u.time, u.ip).await?;
        }
        for s in sessions_seen {
            let user_agent = truncate_user_agent(s.user_agent);
            let idle_until = s.time.saturating_add(idle);
            sessions::seen(&tx, s.id, s.time, s.ip, &user_agent, idle_until).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// ChangePassword: proves the current one, ends every other session.
    pub(crate) async fn change_password(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        current: &str,
        new: &str,
        ip: &str,
    ) -> Result<(AccessToken, i64), IdentityError> {
        let mut session = self.own_session(user_id, session_id).await?;
        let keys = vec![(format!("reauth:{user_id}"), Counter::Pair)];
        // Counted before the password is checked (concurrent guesses cannot
        // all be checked); the right one resets it.
        self.admit_attempt(&keys).await?;
        let (hash, email) = users::password_and_email(&self.db, user_id)
            .await?
            .ok_or(IdentityError::SessionEnded)?;
        let (ok, _) = self.hasher.verify(normalise(current), hash).await?;
        if !ok {
            return Err(IdentityError::invalid(
                Invalid::PasswordIncorrect,
                "current_password",
                "wrong password",
            ));
        }
        self.reset_failures(&keys[0].0).await?;
        if normalise(current) == normalise(new) {
            return Err(IdentityError::invalid(
                Invalid::PasswordUnchanged,
                "new_password",
                "choose a different password",
            ));
        }
        let local = parse_email("email", &email).ok().map(|e| e.local);
        let password = check_new_password(
            "new_password",
            new,
            self.auth.password_min_chars,
            local.as_deref(),
        )?;
        let new_hash = self.hasher.hash(password).await?;
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        users::set_password(&tx, user_id, new_hash, now.millis(), false).await?;
        store::email_tokens::spend_all_of(&tx, user_id, Purpose::Reset, now.millis()).await?;
        let others = sessions::open_ids(&tx, user_id, None, Some(&session.id)).await?;
        let n = self
            .end_sessions(&tx, &others, user_id, pb::RevocationReason::PasswordChanged)
            .await?;
        sessions::set_auth_time(&tx, &session.id, now.millis()).await?;
        tx.commit().await?;
        self.notify_revocations();
        self.security_notice(
            user_id,
            MessageTemplate::SecurityPasswordChanged,
            ip,
            &[("reset_url", self.portal_page("forgot-password"))],
        )
        .await;
        session.auth_time = now.millis();
        Ok((self.access_token(&session).await?, n))
    }

    /// SetCodeWord (recent authentication).
    pub(crate) async fn set_code_word(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        word: &str,
    ) -> Result<(), IdentityError> {
        let session = self.own_session(user_id, session_id).await?;
        self.require_recent(&session)?;
        let word = crate::domain::credentials::normalise_code_word(word).ok_or_else(|| {
            IdentityError::invalid(Invalid::CodeWord, "code_word", "must be 4–64 characters")
        })?;
        let hash = self.hasher.hash(word).await?;
        users::set_code_word(&self.db, user_id, hash, self.now().millis()).await?;
        Ok(())
    }

    /// VerifyCodeWord: at most 5 failed checks per user per hour (each
    /// attempt takes its place atomically before the word is checked);
    /// audited.
    pub(crate) async fn verify_code_word(
        &self,
        user: &UserId,
        staff_user_id: &str,
        account_id: &str,
        code_word: &str,
    ) -> Result<CodeWordCheck, IdentityError> {
        let user_id = user.to_string();
        let hash = users::code_word_hash(&self.db, &user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        let now = self.now();
        let hour_ago = now.minus(std::time::Duration::from_secs(3600)).millis();
        let check_id = tenancy_runtime::ids::new_id();
        // The attempt is counted (as a failure) before the word is checked,
        // in one locked step, so concurrent guesses cannot all pass.
        let Some(failures) = code_words::reserve(
            &self.db,
            code_words::Check {
                id: check_id.clone(),
                user_id: &user_id,
                staff_user_id,
                account_id,
                time: now.millis(),
            },
            hour_ago,
            CODE_WORD_FAILURES_PER_HOUR,
        )
        .await?
        else {
            return Err(IdentityError::CodeWordChecksExceeded {
                retry_after: std::time::Duration::from_secs(3600),
            });
        };
        let set = hash.is_some();
        let matched = match (
            hash,
            crate::domain::credentials::normalise_code_word(code_word),
        ) {
            (Some(h), Some(w)) => self.hasher.verify(w, Some(h)).await?.0,
            (h, _) => {
                // Same work whether or not a word is set.
                let _ = self.hasher.verify(code_word.to_owned(), h).await?;
                false
            }
        };
        if matched {
            code_words::matched(&self.db, &check_id).await?;
        } else {
            // At most 5 a user an hour: failed checks are limited above.
            self.security_notice(
                &user_id,
                MessageTemplate::SecurityCodeWordFailed,
                "",
                &[
                    ("check_time", super::time_text(now)),
                    ("security_url", self.portal_page("security")),
                ],
            )
            .await;
        }
        let used = failures + i64::from(!matched);
        Ok(CodeWordCheck {
            matched,
            set,
            remaining_attempts: (CODE_WORD_FAILURES_PER_HOUR - used).max(0),
        })
    }

    /// RevokeMemberSessions: ends the member's sessions in the caller's
    /// account, refuses their earlier tokens for it, optionally API tokens.
    pub(crate) async fn revoke_member_sessions(
        &self,
        owner: &str,
        account_id: &str,
        member: &UserId,
        api_tokens: bool,
    ) -> Result<(i64, i64), IdentityError> {
        let member = member.to_string();
        let tx = crate::store::begin(&self.db).await?;
        self.append_revocation(
            &tx,
            Revocation::UserAccount {
                user_id: member.clone(),
                account_id: account_id.to_owned(),
            },
            pb::RevocationReason::RevokedByOwner,
        )
        .await?;
        let sessions = sessions::open_ids(&tx, &member, Some(account_id), None).await?;
        let n = self
            .end_sessions(
                &tx,
                &sessions,
                &member,
                pb::RevocationReason::RevokedByOwner,
            )
            .await?;
        let tokens = if api_tokens {
            self.revoke_api_tokens_of(
                &tx,
                &member,
                account_id,
                owner,
                pb::RevocationReason::RevokedByOwner,
                None,
            )
            .await?
            .0
        } else {
            0
        };
        tx.commit().await?;
        self.notify_revocations();
        Ok((n, tokens))
    }

    /// ListLoginEvents / ListMemberLoginEvents (newest first, one page).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn login_events(
        &self,
        user_id: &str,
        account: Option<&str>,
        filter: &LoginEventFilter<'_>,
        limit: u64,
        page_token: &str,
    ) -> Result<(Vec<LoginEventRow>, String), IdentityError> {
        if let (Some(s), Some(e)) = (filter.start, filter.end)
            && s > e
        {
            return Err(IdentityError::invalid(
                Invalid::TimeRange,
                "start_time",
                "after end_time",
            ));
        }
        let list = LoginEventList {
            user: user_id.to_owned(),
            account: account.unwrap_or_default().to_owned(),
            time: 0,
            id: String::new(),
        };
        let after = ids::decode_page_token_for::<LoginEventList>(page_token, |c| {
            c.user == list.user && c.account == list.account
        })?;
        let after = after.map_or((i64::MAX, String::new()), |c| (c.time, c.id));
        let mut rows = login_events::page(
            &self.db,
            login_events::Query {
                user_id,
                account_id: &list.account,
                start: filter.start.map_or(i64::MIN, |t| t.millis()),
                end: filter.end.map_or(i64::MAX, |t| t.millis()),
                after,
                methods: filter.methods,
                outcomes: filter.outcomes,
                limit: i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1),
            },
        )
        .await?;
        let mut next = String::new();
        if rows.len() as u64 > limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            if let Some(last) = rows.last() {
                next = ids::encode_page_token(&LoginEventList {
                    time: last.time,
                    id: last.id.clone(),
                    ..list
                });
            }
        }
        Ok((rows, next))
    }
}

/// How an operator command names a user.
#[derive(Clone, Debug)]
pub(crate) enum UserRef<'a> {
    /// By id.
    Id(UserId),
    /// By email.
    Email(&'a str),
}

/// The filters of ListLoginEvents / ListMemberLoginEvents.
pub(crate) struct LoginEventFilter<'a> {
    /// Events at or after this time.
    pub(crate) start: Option<Timestamp>,
    /// Events before this time.
    pub(crate) end: Option<Timestamp>,
    /// Only these methods (all when empty).
    pub(crate) methods: &'a [i32],
    /// Only these outcomes (all when empty).
    pub(crate) outcomes: &'a [i32],
}

/// Where the next page of a login-event list starts (after this event), and
/// which list (user, account filter) the token was issued for.
#[derive(serde::Serialize, serde::Deserialize)]
struct LoginEventList {
    user: String,
    account: String,
    time: i64,
    id: String,
}
