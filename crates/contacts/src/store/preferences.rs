//! Members' notification choices per account.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use tenancy_runtime::{Error, Timestamp};

use super::entities::notification_preference as pref;

/// The stored choices of `user` in `account`: (category, enabled, updated_at).
pub async fn get(
    db: &DatabaseConnection,
    account: &str,
    user: &str,
) -> Result<Vec<pref::Model>, Error> {
    Ok(pref::Entity::find()
        .filter(pref::Column::AccountId.eq(account))
        .filter(pref::Column::UserId.eq(user))
        .all(db)
        .await?)
}

/// The stored choices for `category` of every user in `account`.
pub async fn for_category(
    db: &DatabaseConnection,
    account: &str,
    category: i32,
) -> Result<Vec<pref::Model>, Error> {
    Ok(pref::Entity::find()
        .filter(pref::Column::AccountId.eq(account))
        .filter(pref::Column::Category.eq(category))
        .all(db)
        .await?)
}

/// Stores `choices` (category, enabled) of `user` in `account`, in one
/// transaction.
pub async fn set(
    db: &DatabaseConnection,
    account: &str,
    user: &str,
    choices: &[(i32, bool)],
    now: Timestamp,
) -> Result<(), Error> {
    let txn = db.begin().await?;
    for (category, enabled) in choices {
        pref::Entity::insert(pref::ActiveModel {
            account_id: Set(account.to_owned()),
            user_id: Set(user.to_owned()),
            category: Set(*category),
            enabled: Set(*enabled),
            updated_at: Set(now.millis()),
        })
        .on_conflict(
            OnConflict::columns([
                pref::Column::AccountId,
                pref::Column::UserId,
                pref::Column::Category,
            ])
            .update_columns([pref::Column::Enabled, pref::Column::UpdatedAt])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}
