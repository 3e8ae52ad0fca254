//! A sign-up's phone number (issue 17): it waits on the sign-up's
//! verification link with the password hash and name (NULL: none given),
//! and is sent its code by SMS only once that link is followed.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000007_sign_up_phone"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE identity_email_tokens ADD COLUMN phone TEXT")
            .await?;
        Ok(())
    }
}
