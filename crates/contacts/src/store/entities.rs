//! The tables of the contacts service.
#![allow(missing_docs, unreachable_pub)]

/// Remembered idempotency keys of SendEmail and Notify.
pub mod outbox_request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_request")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub request_hash: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One email to one recipient.
pub mod outbox_message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_message")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub idempotency_key: String,
        pub position: i32,
        pub to_email: String,
        pub to_email_norm: String,
        pub to_name: String,
        pub subject: String,
        pub body_text: String,
        pub body_html: String,
        pub template: i32,
        pub template_data: String,
        pub account_id: String,
        pub category: i32,
        pub state: i32,
        pub attempts: i32,
        pub next_attempt_at: Option<i64>,
        pub lease_until: Option<i64>,
        pub last_attempt_at: Option<i64>,
        pub last_error: String,
        pub created_at: i64,
        pub sent_at: Option<i64>,
        pub smtp_message_id: String,
        /// `OutboxChannel`: 1 email, 2 SMS.
        pub channel: i32,
        /// The SMS recipient (E.164); empty for email.
        pub to_phone: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A contact of an account.
pub mod contact {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub account_id: String,
        pub name: String,
        pub email: String,
        pub email_norm: String,
        pub email_verified: bool,
        pub email_verified_at: Option<i64>,
        pub verification_sent_at: Option<i64>,
        pub verification_token_hash: Option<String>,
        pub verification_expires_at: Option<i64>,
        pub resend_window_start: Option<i64>,
        pub resend_count: i32,
        pub phone: String,
        pub notes: String,
        pub is_primary: bool,
        pub role_billing: bool,
        pub role_technical: bool,
        pub role_emergency: bool,
        pub role_abuse: bool,
        pub request_id: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A member's choice for one category in one account.
pub mod notification_preference {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_preference")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub category: i32,
        pub enabled: bool,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The sealed secret of one outbox message, deleted once it is delivered
/// or given up.
pub mod outbox_secret {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_secret")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: String,
        pub sealed: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
