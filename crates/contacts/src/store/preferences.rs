//! Members' notification choices per account.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Timestamp};

use super::entities::notification_preference as pref;
use crate::domain::routing::{Category, Choice};

/// A stored choice as the domain sees it (`None` for a category this
/// version does not know; `set` stores known ones only).
fn choice_of(m: pref::Model) -> Option<Choice> {
    Some(Choice {
        category: Category::from_i32(m.category)?,
        user: UserId::trusted(m.user_id),
        enabled: m.enabled,
        updated_at: m.updated_at,
    })
}

/// The stored choices of `user` in `account`.
pub async fn get(
    db: &DatabaseConnection,
    account: &AccountId,
    user: &UserId,
) -> Result<Vec<Choice>, Error> {
    Ok(pref::Entity::find()
        .filter(pref::Column::AccountId.eq(account.as_str()))
        .filter(pref::Column::UserId.eq(user.as_str()))
        .all(db)
        .await?
        .into_iter()
        .filter_map(choice_of)
        .collect())
}

/// The stored choices for `category` of every user in `account`.
pub async fn for_category(
    db: &DatabaseConnection,
    account: &AccountId,
    category: Category,
) -> Result<Vec<Choice>, Error> {
    Ok(pref::Entity::find()
        .filter(pref::Column::AccountId.eq(account.as_str()))
        .filter(pref::Column::Category.eq(category as i32))
        .all(db)
        .await?
        .into_iter()
        .filter_map(choice_of)
        .collect())
}

/// Stores `choices` (category, enabled) of `user` in `account`, in one
/// transaction.
pub async fn set(
    db: &DatabaseConnection,
    account: &AccountId,
    user: &UserId,
    choices: &[(Category, bool)],
    now: Timestamp,
) -> Result<(), Error> {
    let txn = tenancy_runtime::db::begin(db).await?;
    for (category, enabled) in choices {
        pref::Entity::insert(pref::ActiveModel {
            account_id: Set(account.to_string()),
            user_id: Set(user.to_string()),
            category: Set(*category as i32),
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
