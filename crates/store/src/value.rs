//! Values that cross the storage boundary: parameters in, columns out. The schema uses only
//! integers (money in minor units, times in UTC epoch milliseconds), text, blobs, booleans
//! and doubles, so one small type serves both backends.

use std::{borrow::Cow, error::Error};

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::error::{StoreError, StoreResult};

/// A statement parameter or an owned cell of a bulk insert.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    I64(i64),
    F64(f64),
    Bool(bool),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
}

impl Value<'_> {
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::I64(value) => Value::I64(value),
            Value::F64(value) => Value::F64(value),
            Value::Bool(value) => Value::Bool(value),
            Value::Text(value) => Value::Text(Cow::Owned(value.into_owned())),
            Value::Blob(value) => Value::Blob(Cow::Owned(value.into_owned())),
        }
    }
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::I64(value)
    }
}
impl From<i32> for Value<'_> {
    fn from(value: i32) -> Self {
        Value::I64(i64::from(value))
    }
}
impl From<u32> for Value<'_> {
    fn from(value: u32) -> Self {
        Value::I64(i64::from(value))
    }
}
impl From<bool> for Value<'_> {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}
impl From<f64> for Value<'_> {
    fn from(value: f64) -> Self {
        Value::F64(value)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(Cow::Borrowed(value))
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(Cow::Borrowed(value.as_str()))
    }
}
impl From<String> for Value<'_> {
    fn from(value: String) -> Self {
        Value::Text(Cow::Owned(value))
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(value: &'a [u8]) -> Self {
        Value::Blob(Cow::Borrowed(value))
    }
}
impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(value: &'a Vec<u8>) -> Self {
        Value::Blob(Cow::Borrowed(value.as_slice()))
    }
}
impl From<Vec<u8>> for Value<'_> {
    fn from(value: Vec<u8>) -> Self {
        Value::Blob(Cow::Owned(value))
    }
}
macro_rules! from_option {
    ($($ty:ty),+) => {$(
        impl<'a> From<Option<$ty>> for Value<'a> {
            fn from(value: Option<$ty>) -> Self {
                value.map_or(Value::Null, Into::into)
            }
        }
    )+};
}

from_option!(i64, bool, f64, &'a str, String, Vec<u8>, &'a [u8]);

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(value: &'a Option<String>) -> Self {
        value.as_deref().map_or(Value::Null, Into::into)
    }
}

impl<'a> From<&'a Option<Vec<u8>>> for Value<'a> {
    fn from(value: &'a Option<Vec<u8>>) -> Self {
        value.as_deref().map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `params![id, name, &phone_index]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::Value<'_>] };
    ($($value:expr),+ $(,)?) => { &[$($crate::Value::from($value)),+] as &[$crate::Value<'_>] };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::I64(value) => ValueRef::Integer(*value),
            Value::F64(value) => ValueRef::Real(*value),
            Value::Bool(value) => ValueRef::Integer(i64::from(*value)),
            Value::Text(value) => ValueRef::Text(value.as_bytes()),
            Value::Blob(value) => ValueRef::Blob(value),
        }))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::I64(value) => match *ty {
                Type::INT8 => value.to_sql(ty, out),
                Type::INT4 => i32::try_from(*value)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*value)?.to_sql(ty, out),
                Type::BOOL => (*value != 0).to_sql(ty, out),
                Type::FLOAT8 => (*value as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => value.to_string().to_sql(ty, out),
                _ => Err(format!("cannot send an integer as {ty}").into()),
            },
            Value::F64(value) => match *ty {
                Type::FLOAT4 => (*value as f32).to_sql(ty, out),
                _ => value.to_sql(ty, out),
            },
            Value::Bool(value) => match *ty {
                Type::INT8 => i64::from(*value).to_sql(ty, out),
                Type::INT4 => i32::from(*value).to_sql(ty, out),
                _ => value.to_sql(ty, out),
            },
            Value::Text(value) => value.as_ref().to_sql(ty, out),
            Value::Blob(value) => value.as_ref().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One result row of either backend. Columns are read by position.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    pub fn get<T: FromColumn>(&self, index: usize) -> StoreResult<T> {
        match self {
            Row::Sqlite(row) => T::from_sqlite(row, index),
            Row::Postgres(row) => T::from_postgres(row, index),
        }
    }
}

/// A Rust type a column can be read into.
pub trait FromColumn: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self>;
    fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self>;
}

fn decode(column: usize, error: impl std::fmt::Display) -> StoreError {
    StoreError::Decode { column, message: error.to_string() }
}

fn unexpected_null(column: usize) -> StoreError {
    StoreError::Decode { column, message: "unexpected NULL".into() }
}

fn pg_i64(row: &postgres::Row, index: usize) -> StoreResult<Option<i64>> {
    let ty = row.columns().get(index).ok_or_else(|| decode(index, "no such column"))?.type_().clone();
    match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(|error| decode(index, error)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map(|value| value.map(i64::from))
            .map_err(|error| decode(index, error)),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map(|value| value.map(i64::from))
            .map_err(|error| decode(index, error)),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map(|value| value.map(i64::from))
            .map_err(|error| decode(index, error)),
        other => Err(decode(index, format!("expected an integer column, found {other}"))),
    }
}

fn pg_f64(row: &postgres::Row, index: usize) -> StoreResult<Option<f64>> {
    let ty = row.columns().get(index).ok_or_else(|| decode(index, "no such column"))?.type_().clone();
    match ty {
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(index).map_err(|error| decode(index, error)),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)
            .map(|value| value.map(f64::from))
            .map_err(|error| decode(index, error)),
        _ => pg_i64(row, index).map(|value| value.map(|integer| integer as f64)),
    }
}

impl FromColumn for Option<i64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self> {
        row.get(index).map_err(|error| decode(index, error))
    }
    fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self> {
        pg_i64(row, index)
    }
}

impl FromColumn for Option<f64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self> {
        row.get(index).map_err(|error| decode(index, error))
    }
    fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self> {
        pg_f64(row, index)
    }
}

impl FromColumn for Option<bool> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self> {
        row.get(index).map_err(|error| decode(index, error))
    }
    fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self> {
        pg_i64(row, index).map(|value| value.map(|integer| integer != 0))
    }
}

impl FromColumn for Option<String> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self> {
        row.get(index).map_err(|error| decode(index, error))
    }
    fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self> {
        row.try_get(index).map_err(|error| decode(index, error))
    }
}

impl FromColumn for Option<Vec<u8>> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self> {
        row.get(index).map_err(|error| decode(index, error))
    }
    fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self> {
        row.try_get(index).map_err(|error| decode(index, error))
    }
}

macro_rules! not_null {
    ($($ty:ty),+) => {$(
        impl FromColumn for $ty {
            fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> StoreResult<Self> {
                Option::<$ty>::from_sqlite(row, index)?.ok_or_else(|| unexpected_null(index))
            }
            fn from_postgres(row: &postgres::Row, index: usize) -> StoreResult<Self> {
                Option::<$ty>::from_postgres(row, index)?.ok_or_else(|| unexpected_null(index))
            }
        }
    )+};
}

not_null!(i64, f64, bool, String, Vec<u8>);
