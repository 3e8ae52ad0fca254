#![allow(unreachable_pub)]
//! The sea-orm entities of the support tables.

/// `support_tickets`: one row per ticket, with its counters.
pub(crate) mod ticket {
    use sea_orm::entity::prelude::*;

    /// A stored ticket.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "support_tickets")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The account the ticket belongs to.
        pub account_id: String,
        /// Trimmed subject.
        pub subject: String,
        /// The service it is about; `None`: account-general.
        pub service_id: Option<String>,
        /// `Category` value.
        pub category: i32,
        /// `Priority` value.
        pub priority: i32,
        /// `Status` value.
        pub status: i32,
        /// The member who created it.
        pub created_by_user_id: String,
        /// The staff user holding it.
        pub assignee_user_id: Option<String>,
        /// Customer-visible messages.
        pub message_count: i32,
        /// Internal notes.
        pub internal_note_count: i32,
        /// Sequence of the latest customer-visible message.
        pub last_message_sequence: i64,
        /// Sequence of the latest entry (message or note): the counter.
        pub last_sequence: i64,
        /// Unix ms.
        pub create_time: i64,
        /// Unix ms of the latest customer-visible change.
        pub update_time: i64,
        /// Unix ms of the latest customer-visible message.
        pub last_message_time: i64,
        /// Unix ms of the latest status change.
        pub status_change_time: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `support_messages`: the conversation and internal notes.
pub(crate) mod message {
    use sea_orm::entity::prelude::*;

    /// A stored message or internal note.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "support_messages")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The ticket.
        pub ticket_id: String,
        /// Position in the ticket, from 1.
        pub sequence: i64,
        /// `ActorKind` value.
        pub author_kind: i32,
        /// The author; `None` for the system.
        pub author_user_id: Option<String>,
        /// Plain text as written.
        #[sea_orm(column_type = "Text")]
        pub body: String,
        /// Staff-only note.
        pub internal: bool,
        /// Unix ms.
        pub create_time: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `support_ticket_cc`: members following a ticket.
pub(crate) mod cc {
    use sea_orm::entity::prelude::*;

    /// One CC user of one ticket.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "support_ticket_cc")]
    pub struct Model {
        /// The ticket.
        #[sea_orm(primary_key, auto_increment = false)]
        pub ticket_id: String,
        /// The member.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `support_requests`: request ids seen, for safe retries.
pub(crate) mod request {
    use sea_orm::entity::prelude::*;

    /// One client request id of one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "support_requests")]
    pub struct Model {
        /// Who sent it.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// The client's UUID.
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// `ticket`, `message` or `note`.
        pub kind: String,
        /// The ticket concerned.
        pub ticket_id: String,
        /// The ticket or message created.
        pub target_id: String,
        /// SHA-256 of the request's content.
        pub fingerprint: String,
        /// Unix ms.
        pub create_time: i64,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
