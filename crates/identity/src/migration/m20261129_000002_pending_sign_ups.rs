//! Sign-ups are bound to their verification link: the password hash and
//! name a sign-up chose wait on its link (`identity_email_tokens`) and
//! become the user's only when that link is followed. Unverified users'
//! hashes move from their row onto their live links, so a hash chosen by
//! whoever signed up first never becomes valid by itself.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000002_pending_sign_ups"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "ALTER TABLE identity_email_tokens ADD COLUMN password_hash TEXT",
            "ALTER TABLE identity_email_tokens ADD COLUMN name TEXT",
            // Only sign-ups leave a user unverified with a password: their
            // live links carry it from now on.
            "UPDATE identity_email_tokens SET \
             password_hash = (SELECT u.password_hash FROM identity_users u \
                              WHERE u.id = identity_email_tokens.user_id), \
             name = (SELECT u.name FROM identity_users u \
                     WHERE u.id = identity_email_tokens.user_id) \
             WHERE purpose = 'verify' AND used_time IS NULL AND user_id IN \
             (SELECT id FROM identity_users WHERE email_verified = FALSE \
              AND password_hash IS NOT NULL)",
            "UPDATE identity_users SET password_hash = NULL, password_update_time = NULL \
             WHERE email_verified = FALSE AND password_hash IS NOT NULL",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
