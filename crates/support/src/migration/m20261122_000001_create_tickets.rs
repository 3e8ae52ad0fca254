#![allow(elided_lifetimes_in_paths)]
//! Tickets, their messages, CC users and request ids for safe retries.

use sea_orm_migration::prelude::*;

/// Creates the ticket tables and the indexes the lists need.
pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_create_tickets"
    }
}

#[derive(DeriveIden)]
enum SupportTickets {
    Table,
    Id,
    AccountId,
    Subject,
    ServiceId,
    Category,
    Priority,
    Status,
    CreatedByUserId,
    AssigneeUserId,
    MessageCount,
    InternalNoteCount,
    LastMessageSequence,
    LastSequence,
    CreateTime,
    UpdateTime,
    LastMessageTime,
    StatusChangeTime,
}

#[derive(DeriveIden)]
enum SupportMessages {
    Table,
    Id,
    TicketId,
    Sequence,
    AuthorKind,
    AuthorUserId,
    Body,
    Internal,
    CreateTime,
}

#[derive(DeriveIden)]
enum SupportTicketCc {
    Table,
    TicketId,
    UserId,
}

#[derive(DeriveIden)]
enum SupportRequests {
    Table,
    UserId,
    RequestId,
    Kind,
    TicketId,
    TargetId,
    Fingerprint,
    CreateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SupportTickets as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(ColumnDef::new(T::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(T::AccountId).string().not_null())
                    .col(ColumnDef::new(T::Subject).string().not_null())
                    .col(ColumnDef::new(T::ServiceId).string().null())
                    .col(ColumnDef::new(T::Category).integer().not_null())
                    .col(ColumnDef::new(T::Priority).integer().not_null())
                    .col(ColumnDef::new(T::Status).integer().not_null())
                    .col(ColumnDef::new(T::CreatedByUserId).string().not_null())
                    .col(ColumnDef::new(T::AssigneeUserId).string().null())
                    .col(ColumnDef::new(T::MessageCount).integer().not_null())
                    .col(ColumnDef::new(T::InternalNoteCount).integer().not_null())
                    .col(
                        ColumnDef::new(T::LastMessageSequence)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(T::LastSequence).big_integer().not_null())
                    .col(ColumnDef::new(T::CreateTime).big_integer().not_null())
                    .col(ColumnDef::new(T::UpdateTime).big_integer().not_null())
                    .col(ColumnDef::new(T::LastMessageTime).big_integer().not_null())
                    .col(ColumnDef::new(T::StatusChangeTime).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // One index per list order within an account; the service index
        // serves SELECTED members (`service_id IS NULL OR service_id IN ...`).
        let indexes: [(&str, Vec<T>); 5] = [
            (
                "support_tickets_account_update",
                vec![T::AccountId, T::UpdateTime, T::Id],
            ),
            (
                "support_tickets_account_create",
                vec![T::AccountId, T::CreateTime, T::Id],
            ),
            (
                "support_tickets_account_priority",
                vec![T::AccountId, T::Priority, T::UpdateTime, T::Id],
            ),
            (
                "support_tickets_account_service_update",
                vec![T::AccountId, T::ServiceId, T::UpdateTime, T::Id],
            ),
            (
                "support_tickets_queue",
                vec![T::Priority, T::UpdateTime, T::Id],
            ),
        ];
        for (name, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(T::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        use SupportMessages as M;
        manager
            .create_table(
                Table::create()
                    .table(M::Table)
                    .col(ColumnDef::new(M::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(M::TicketId).string().not_null())
                    .col(ColumnDef::new(M::Sequence).big_integer().not_null())
                    .col(ColumnDef::new(M::AuthorKind).integer().not_null())
                    .col(ColumnDef::new(M::AuthorUserId).string().null())
                    .col(ColumnDef::new(M::Body).text().not_null())
                    .col(ColumnDef::new(M::Internal).boolean().not_null())
                    .col(ColumnDef::new(M::CreateTime).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // The sequence is unique per ticket: the database backs the counter.
        manager
            .create_index(
                Index::create()
                    .name("support_messages_ticket_sequence")
                    .table(M::Table)
                    .col(M::TicketId)
                    .col(M::Sequence)
                    .unique()
                    .to_owned(),
            )
            .await?;

        use SupportTicketCc as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .col(ColumnDef::new(C::TicketId).string().not_null())
                    .col(ColumnDef::new(C::UserId).string().not_null())
                    .primary_key(Index::create().col(C::TicketId).col(C::UserId))
                    .to_owned(),
            )
            .await?;

        use SupportRequests as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .col(ColumnDef::new(R::UserId).string().not_null())
                    .col(ColumnDef::new(R::RequestId).string().not_null())
                    .col(ColumnDef::new(R::Kind).string().not_null())
                    .col(ColumnDef::new(R::TicketId).string().not_null())
                    .col(ColumnDef::new(R::TargetId).string().not_null())
                    .col(ColumnDef::new(R::Fingerprint).string().not_null())
                    .col(ColumnDef::new(R::CreateTime).big_integer().not_null())
                    .primary_key(Index::create().col(R::UserId).col(R::RequestId))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SupportRequests::Table.into_iden(),
            SupportTicketCc::Table.into_iden(),
            SupportMessages::Table.into_iden(),
            SupportTickets::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
