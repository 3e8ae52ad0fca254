//! The networks each user created sessions from, for the new-address
//! notice (`domain::network`), filled from the login history so that the
//! first login after the upgrade from a user's usual network sends nothing.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::domain::network::{KNOWN_FOR, login_network};
use tenancy_runtime::db::{all, exec, get};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_login_networks"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE identity_login_networks (
                user_id TEXT NOT NULL,
                network TEXT NOT NULL,
                last_time BIGINT NOT NULL,
                PRIMARY KEY (user_id, network)
            )",
        )
        .await?;
        // Sessions created (LOGIN_OUTCOME_SUCCESS by password, TOTP or
        // recovery code) within the time a network stays known.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(KNOWN_FOR)
            .as_millis();
        let since = i64::try_from(since).unwrap_or(0);
        let rows = all(
            db,
            "SELECT user_id, ip, MAX(time) AS last_time FROM identity_login_events \
             WHERE outcome = 1 AND method IN (1, 2, 3) AND time > $1 GROUP BY user_id, ip",
            vec![since.into()],
        )
        .await?;
        let mut latest: HashMap<(String, String), i64> = HashMap::new();
        for row in rows {
            let user: String = get(&row, "user_id")?;
            let ip: String = get(&row, "ip")?;
            let time: i64 = get(&row, "last_time")?;
            let entry = latest.entry((user, login_network(&ip))).or_insert(time);
            *entry = (*entry).max(time);
        }
        for ((user, network), time) in latest {
            exec(
                db,
                "INSERT INTO identity_login_networks (user_id, network, last_time) \
                 VALUES ($1, $2, $3)",
                vec![user.into(), network.into(), time.into()],
            )
            .await?;
        }
        Ok(())
    }
}
