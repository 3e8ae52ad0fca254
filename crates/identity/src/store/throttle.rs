//! Failure counters (`identity_throttle`) behind the back-off of logins,
//! second factors, proofs and notices.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::Timestamp;
use tenancy_runtime::db::{exec, for_update, get, one};

use crate::domain::throttle::{self, Counter, State};

async fn read<C: ConnectionTrait>(c: &C, key: &str, lock: &str) -> Result<Option<State>, DbErr> {
    one(
        c,
        &format!(
            "SELECT failures, window_start, last_failure FROM identity_throttle WHERE key = $1{lock}"
        ),
        vec![key.into()],
    )
    .await?
    .map(|row| {
        Ok(State {
            failures: get(&row, "failures")?,
            window_start: Timestamp(get(&row, "window_start")?),
            last_failure: Timestamp(get(&row, "last_failure")?),
        })
    })
    .transpose()
}

/// The counter under `key` as stored, read only (no row made, nothing
/// locked): for a check that counts no attempt.
pub(crate) async fn state<C: ConnectionTrait>(c: &C, key: &str) -> Result<Option<State>, DbErr> {
    read(c, key, "").await
}

/// The counter under `key`, locked until `c`'s transaction ends (created
/// empty when missing, so that there is a row to lock): concurrent attempts
/// on one key are checked and counted one after the other. SQLite: the
/// INSERT takes the database's write lock; PostgreSQL: `FOR UPDATE`.
pub(crate) async fn lock<C: ConnectionTrait>(c: &C, key: &str) -> Result<Option<State>, DbErr> {
    exec(
        c,
        "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
         VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
        vec![key.into()],
    )
    .await?;
    read(c, key, for_update(c)).await
}

/// Takes back one counted attempt under `key` (it succeeded, so it was no
/// failure).
pub(crate) async fn refund<C: ConnectionTrait>(c: &C, key: &str) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
        vec![key.into()],
    )
    .await?;
    Ok(())
}

/// Counts a failure under `key` at `now` (atomic upsert): a counter whose
/// window is over starts again at 1 (the domain's `throttle::after_failure`,
/// whose rule this SQL is; the test below holds them together).
pub(crate) async fn count_failure<C: ConnectionTrait>(
    c: &C,
    key: &str,
    kind: Counter,
    now: Timestamp,
) -> Result<(), DbErr> {
    let since = if throttle::window_from_last_failure(kind) {
        "identity_throttle.last_failure"
    } else {
        "identity_throttle.window_start"
    };
    let window = i64::try_from(throttle::window(kind).as_millis()).unwrap_or(i64::MAX);
    exec(
        c,
        &format!(
            "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
             VALUES ($1, 1, $2, $2) ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN {since} + $3 <= $2 THEN 1 ELSE identity_throttle.failures + 1 END, \
             window_start = CASE WHEN {since} + $3 <= $2 THEN $2 ELSE identity_throttle.window_start END, \
             last_failure = $2"
        ),
        vec![key.into(), now.millis().into(), window.into()],
    )
    .await?;
    Ok(())
}

/// Forgets the counter under `key`.
pub(crate) async fn clear<C: ConnectionTrait>(c: &C, key: &str) -> Result<(), DbErr> {
    exec(
        c,
        "DELETE FROM identity_throttle WHERE key = $1",
        vec![key.into()],
    )
    .await?;
    Ok(())
}

/// Forgets the counter under `key` and every one whose key starts with
/// `prefix` (compared without LIKE, whose wildcards a key may contain);
/// how many there were.
pub(crate) async fn clear_with_prefix<C: ConnectionTrait>(
    c: &C,
    key: &str,
    prefix: &str,
) -> Result<u64, DbErr> {
    exec(
        c,
        "DELETE FROM identity_throttle WHERE key = $1 OR substr(key, 1, length($2)) = $2",
        vec![key.into(), prefix.into()],
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use sea_orm::DatabaseConnection;
    use tenancy_testkit::TestDatabase;

    use super::*;
    use crate::domain::throttle::{MAX_BACKOFF, WINDOW, after_failure, blocked_until, window_over};

    const KINDS: [Counter; 4] = [Counter::Pair, Counter::Email, Counter::Ip, Counter::Notice];

    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap()
    }

    /// How far before `now` a time lies: mostly at and around the
    /// boundaries the rules compare with, else anywhere in two windows.
    fn age() -> impl Strategy<Value = i64> {
        let edges: Vec<i64> = [WINDOW, MAX_BACKOFF, Duration::ZERO]
            .iter()
            .flat_map(|d| [ms(*d) - 1, ms(*d), ms(*d) + 1])
            .filter(|a| *a >= 0)
            .collect();
        prop_oneof![proptest::sample::select(edges), 0..=2 * ms(WINDOW)]
    }

    /// A stored counter (or none), the kind and the time of the next
    /// failure.
    fn case() -> impl Strategy<Value = (Counter, Option<State>, Timestamp)> {
        (
            proptest::sample::select(KINDS.to_vec()),
            proptest::option::weighted(0.9, (0..400_i64, age(), age())),
            ms(WINDOW) * 3..1_000_000_000_000_000_i64,
        )
            .prop_map(|(kind, state, now)| {
                let state = state.map(|(failures, start_age, last_age)| State {
                    failures,
                    window_start: Timestamp(now - start_age.max(last_age)),
                    last_failure: Timestamp(now - start_age.min(last_age)),
                });
                (kind, state, Timestamp(now))
            })
    }

    async fn put(db: &DatabaseConnection, key: &str, state: Option<State>) {
        clear(db, key).await.unwrap();
        if let Some(s) = state {
            exec(
                db,
                "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
                 VALUES ($1, $2, $3, $4)",
                vec![
                    key.into(),
                    s.failures.into(),
                    s.window_start.millis().into(),
                    s.last_failure.millis().into(),
                ],
            )
            .await
            .unwrap();
        }
    }

    /// The SQL of [`count_failure`] (its `CASE`s) and the domain's rule
    /// ([`after_failure`], built on `window_over`) agree on random counters
    /// and times, most of them at the windows' edges; so do the back-offs
    /// (`blocked_until`) of what each produces, then and a while later.
    /// On the test database (SQLite, or PostgreSQL when configured).
    #[test]
    fn sql_counting_agrees_with_the_domain_rule() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_database, db) = runtime.block_on(async {
            let database = TestDatabase::new("throttlesql").await;
            let db = tenancy_runtime::db::open::<crate::migration::Migrator>(&database.url, "test")
                .await
                .unwrap();
            (database, db)
        });
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&case(), |(kind, before, now)| {
                let stored = runtime.block_on(async {
                    put(&db, "k", before).await;
                    count_failure(&db, "k", kind, now).await.unwrap();
                    read(&db, "k", "").await.unwrap().unwrap()
                });
                let want = after_failure(kind, before, now);
                prop_assert_eq!(stored, want, "{:?} {:?} at {:?}", kind, before, now);
                if let Some(b) = before.filter(|b| b.failures > 0) {
                    // A restart is exactly what the domain calls a window over.
                    prop_assert_eq!(stored.failures == 1, window_over(kind, b, now));
                }
                for later in [Duration::ZERO, Duration::from_secs(1), MAX_BACKOFF, WINDOW] {
                    let t = now.plus(later);
                    prop_assert_eq!(blocked_until(kind, stored, t), blocked_until(kind, want, t));
                }
                Ok(())
            })
            .unwrap();
    }
}
