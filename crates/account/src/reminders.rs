//! Background work: 2FA deadline reminders and policy log pruning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tenancy_runtime::db::{self, get};

use sea_orm::DatabaseConnection;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::Error;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::config::Config;
use tenancy_runtime::ids::UserId;

use crate::domain::{MemberStatus, mfa};
use crate::peers::Peers;
use crate::store::{b, i, n, s};

/// How often the job looks for members to remind.
const PERIOD: Duration = Duration::from_secs(1);

/// Runs until aborted.
pub(crate) async fn run(
    db: DatabaseConnection,
    clock: SharedClock,
    peers: Peers,
    config: Arc<Config>,
) {
    loop {
        if let Err(error) = tick(&db, &clock, &peers, &config).await {
            tracing::warn!(%error, "reminder job failed; retrying");
        }
        tokio::time::sleep(PERIOD).await;
    }
}

/// One pass: remind every member whose deadline is near and who has not
/// been reminded for that deadline yet; prune old policy log entries.
pub(crate) async fn tick(
    db: &DatabaseConnection,
    clock: &SharedClock,
    peers: &Peers,
    config: &Config,
) -> Result<(), Error> {
    let now = clock.now().millis();
    let rows = db::all(
        db,
        "SELECT m.account_id, m.user_id, m.mfa_deadline, a.name FROM account_members m JOIN account_accounts a ON a.id = m.account_id \
         WHERE a.enforce_mfa = $1 AND m.status = $2 AND m.portal_access = $1 AND m.mfa_deadline IS NOT NULL \
         AND m.mfa_deadline > $3 AND m.mfa_deadline <= $4 \
         AND (m.mfa_reminded_deadline IS NULL OR m.mfa_reminded_deadline <> m.mfa_deadline) LIMIT 500",
        vec![b(true), n(MemberStatus::Active.code()), i(now), i(now + mfa::REMINDER_BEFORE_MS)],
    )
    .await?;
    if !rows.is_empty() {
        let ids: Vec<UserId> = rows
            .iter()
            .filter_map(|r| get::<UserId>(r, "user_id").ok())
            .collect();
        let users = peers.users(&ids).await?;
        let portal = config.mail.portal_url.trim_end_matches('/');
        for row in rows {
            let account: String = get(&row, "account_id")?;
            let user: UserId = get(&row, "user_id")?;
            let deadline: i64 = get(&row, "mfa_deadline")?;
            let name: String = get(&row, "name")?;
            let Some(info) = users.get(&user) else {
                continue;
            };
            if !info.totp_enabled {
                let data = HashMap::from([
                    ("account_name".to_owned(), name),
                    ("deadline_time".to_owned(), crate::app::rfc3339(deadline)),
                    (
                        "enroll_url".to_owned(),
                        format!("{portal}/security/two-factor"),
                    ),
                ]);
                peers
                    .send_email(
                        format!("account:mfa-reminder:{account}:{user}:{deadline}"),
                        (&info.email, &info.name),
                        MessageTemplate::TwoFactorDeadlineReminder,
                        data,
                        &account,
                    )
                    .await?;
            }
            db::exec(
                db,
                "UPDATE account_members SET mfa_reminded_deadline = $3 WHERE account_id = $1 AND user_id = $2",
                vec![s(account.as_str()), s(user.as_str()), i(deadline)],
            )
            .await?;
        }
    }
    let retention =
        i64::try_from(config.account.change_log_retention.as_millis()).unwrap_or(i64::MAX);
    crate::store::prune::policy_log(db, now.saturating_sub(retention)).await?;
    Ok(())
}
