//! Consent of members (issue 21 §3): a member added by an owner with
//! AddMember has not accepted anything, so the API shows only what the
//! owner typed — the name (`added_name`), the email, and a stand-in id
//! (`alias_id`) — until the person accepts an invitation to the account
//! (`accepted`). See `Member` in `account/v1/member.proto`.
//!
//! Rows from before: `alias_id` is the user id (already shown), and a
//! member counts as accepted when they have portal access, which they
//! could only get by creating the account, accepting an invitation, or an
//! owner granting it (the last can no longer happen without their
//! acceptance). A member without portal access is shown as added until
//! they accept an invitation: the conservative reading.

use sea_orm_migration::prelude::*;

/// Adds `accepted`, `alias_id` and `added_name` to `account_members`.
pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000002_member_consent"
    }
}

const UP: &str = r#"
ALTER TABLE account_members ADD COLUMN accepted BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE account_members ADD COLUMN alias_id TEXT NOT NULL DEFAULT '';
ALTER TABLE account_members ADD COLUMN added_name TEXT NOT NULL DEFAULT '';
UPDATE account_members SET alias_id = user_id, accepted = portal_access;
CREATE UNIQUE INDEX account_members_by_alias ON account_members (account_id, alias_id)
"#;

const DOWN: &str = r#"
DROP INDEX account_members_by_alias;
ALTER TABLE account_members DROP COLUMN added_name;
ALTER TABLE account_members DROP COLUMN alias_id;
ALTER TABLE account_members DROP COLUMN accepted
"#;

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_statements(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_statements(manager, DOWN).await
    }
}
