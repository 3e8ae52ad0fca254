//! A PostgreSQL row read into any `T: Deserialize` as the sequence of its
//! columns, typed and by index: what [`super::bulk_page`] hands serde on
//! PostgreSQL, where plain rows are cheaper than a JSON page (the database
//! spends more building the JSON than the driver reading the rows).
//!
//! Each column is decoded from the wire by its PostgreSQL type, with no
//! value in between: BOOL as a bool, INT2/INT4/INT8 as integers (serde
//! widens or range-checks them for the field), NULL as `None`, anything
//! else as text borrowed from the row (a type that is not text is an error
//! naming it). A row with more columns than `T` has fields is an error too,
//! as it is for a JSON page.

use std::fmt;

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{Row, TypeInfo, ValueRef};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// `row` as a `T`.
pub(super) fn from_row<T: de::DeserializeOwned>(row: &PgRow) -> Result<T, PageError> {
    T::deserialize(Columns { row, next: 0 })
}

/// Why a row is not the `T` expected.
#[derive(Debug)]
pub(super) struct PageError(String);

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PageError {}

impl de::Error for PageError {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self(message.to_string())
    }
}

/// The columns of a row from `next` on: the row itself is a sequence.
struct Columns<'de> {
    row: &'de PgRow,
    next: usize,
}

impl<'de> Deserializer<'de> for Columns<'de> {
    type Error = PageError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, PageError> {
        let value = visitor.visit_seq(&mut self)?;
        let columns = self.row.len();
        if self.next < columns {
            return Err(PageError(format!(
                "the row has {columns} columns; {} were read",
                self.next
            )));
        }
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> SeqAccess<'de> for &mut Columns<'de> {
    type Error = PageError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, PageError> {
        if self.next == self.row.len() {
            return Ok(None);
        }
        let column = Column {
            row: self.row,
            index: self.next,
        };
        self.next += 1;
        seed.deserialize(column).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.row.len() - self.next)
    }
}

/// One column of a row.
struct Column<'de> {
    row: &'de PgRow,
    index: usize,
}

impl<'de> Column<'de> {
    fn is_null(&self) -> Result<bool, PageError> {
        Ok(self.raw()?.is_null())
    }

    fn raw(&self) -> Result<sea_orm::sqlx::postgres::PgValueRef<'de>, PageError> {
        self.row
            .try_get_raw(self.index)
            .map_err(|e| PageError(format!("column {}: {e}", self.index)))
    }

    fn get<T>(&self) -> Result<T, PageError>
    where
        T: sea_orm::sqlx::Decode<'de, sea_orm::sqlx::Postgres>
            + sea_orm::sqlx::Type<sea_orm::sqlx::Postgres>,
    {
        self.row
            .try_get::<T, _>(self.index)
            .map_err(|e| PageError(format!("column {}: {e}", self.index)))
    }
}

impl<'de> Deserializer<'de> for Column<'de> {
    type Error = PageError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PageError> {
        let raw = self.raw()?;
        if raw.is_null() {
            return visitor.visit_none();
        }
        let kind = raw.type_info();
        match kind.name() {
            "BOOL" => visitor.visit_bool(self.get()?),
            "INT2" => visitor.visit_i16(self.get()?),
            "INT4" => visitor.visit_i32(self.get()?),
            "INT8" => visitor.visit_i64(self.get()?),
            _ => visitor.visit_borrowed_str(self.get()?),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PageError> {
        if self.is_null()? {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PageError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
