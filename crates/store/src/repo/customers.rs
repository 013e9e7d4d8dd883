//! Customers, their tags, consents and timeline events. Personal data arrives encrypted
//! with its blind index already computed; this module only stores and finds bytes.

use std::collections::HashMap;

use crate::{Conn, Row, StoreResult, Value, params, repo::bounded};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerRecord {
    pub id: i64,
    pub name: Option<String>,
    /// Lower-cased name for prefix search, compared bytewise.
    pub name_key: Option<String>,
    pub gender: String,
    /// `YYYY-MM-DD`.
    pub birthday: Option<String>,
    pub phone_cipher: Option<Vec<u8>>,
    pub phone_index: Option<Vec<u8>>,
    pub email_cipher: Option<Vec<u8>>,
    pub email_index: Option<Vec<u8>>,
    pub id_kind: Option<String>,
    pub id_number_cipher: Option<Vec<u8>>,
    pub id_number_index: Option<Vec<u8>>,
    pub address_cipher: Option<Vec<u8>>,
    pub occupation: Option<String>,
    pub income_band: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub source_channel: String,
    pub home_store_id: Option<i64>,
    pub external_id: Option<String>,
    pub preferences_json: String,
    /// `active`, `merged` (see `merged_into_id`) or `erased`.
    pub status: String,
    pub merged_into_id: Option<i64>,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

pub const INSERT_COLUMNS: [&str; 26] = [
    "id",
    "name",
    "name_key",
    "gender",
    "birthday",
    "phone_cipher",
    "phone_index",
    "email_cipher",
    "email_index",
    "id_kind",
    "id_number_cipher",
    "id_number_index",
    "address_cipher",
    "occupation",
    "income_band",
    "province",
    "city",
    "source_channel",
    "home_store_id",
    "external_id",
    "preferences_json",
    "status",
    "merged_into_id",
    "version",
    "created_at_ms",
    "updated_at_ms",
];

const COLUMNS: &str = "c.id, c.name, c.name_key, c.gender, c.birthday, c.phone_cipher, c.phone_index, c.email_cipher, \
     c.email_index, c.id_kind, c.id_number_cipher, c.id_number_index, c.address_cipher, c.occupation, c.income_band, \
     c.province, c.city, c.source_channel, c.home_store_id, c.external_id, c.preferences_json, c.status, \
     c.merged_into_id, c.version, c.created_at_ms, c.updated_at_ms";

fn from_row(row: &Row<'_>) -> StoreResult<CustomerRecord> {
    Ok(CustomerRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        name_key: row.get(2)?,
        gender: row.get(3)?,
        birthday: row.get(4)?,
        phone_cipher: row.get(5)?,
        phone_index: row.get(6)?,
        email_cipher: row.get(7)?,
        email_index: row.get(8)?,
        id_kind: row.get(9)?,
        id_number_cipher: row.get(10)?,
        id_number_index: row.get(11)?,
        address_cipher: row.get(12)?,
        occupation: row.get(13)?,
        income_band: row.get(14)?,
        province: row.get(15)?,
        city: row.get(16)?,
        source_channel: row.get(17)?,
        home_store_id: row.get(18)?,
        external_id: row.get(19)?,
        preferences_json: row.get(20)?,
        status: row.get(21)?,
        merged_into_id: row.get(22)?,
        version: row.get(23)?,
        created_at_ms: row.get(24)?,
        updated_at_ms: row.get(25)?,
    })
}

impl CustomerRecord {
    /// The row as values in [`INSERT_COLUMNS`] order.
    pub fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.id.into(),
            (&self.name).into(),
            (&self.name_key).into(),
            (&self.gender).into(),
            (&self.birthday).into(),
            (&self.phone_cipher).into(),
            (&self.phone_index).into(),
            (&self.email_cipher).into(),
            (&self.email_index).into(),
            (&self.id_kind).into(),
            (&self.id_number_cipher).into(),
            (&self.id_number_index).into(),
            (&self.address_cipher).into(),
            (&self.occupation).into(),
            (&self.income_band).into(),
            (&self.province).into(),
            (&self.city).into(),
            (&self.source_channel).into(),
            self.home_store_id.into(),
            (&self.external_id).into(),
            (&self.preferences_json).into(),
            (&self.status).into(),
            self.merged_into_id.into(),
            self.version.into(),
            self.created_at_ms.into(),
            self.updated_at_ms.into(),
        ]
    }
}

/// Inserts customers whose ids were allocated with [`Conn::allocate_ids`].
pub fn insert_many(conn: &mut Conn<'_>, records: &[CustomerRecord]) -> StoreResult<u64> {
    let rows: Vec<Vec<Value<'_>>> = records.iter().map(CustomerRecord::values).collect();
    conn.insert_rows("customers", &INSERT_COLUMNS, &rows)
}

/// Writes every mutable column if the stored version is `expected_version`; the stored
/// version becomes `record.version`. Returns false when someone else changed it first.
pub fn update(conn: &mut Conn<'_>, record: &CustomerRecord, expected_version: i64) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE customers SET name = $2, name_key = $3, gender = $4, birthday = $5, phone_cipher = $6, phone_index = $7, \
         email_cipher = $8, email_index = $9, id_kind = $10, id_number_cipher = $11, id_number_index = $12, \
         address_cipher = $13, occupation = $14, income_band = $15, province = $16, city = $17, source_channel = $18, \
         home_store_id = $19, external_id = $20, preferences_json = $21, status = $22, merged_into_id = $23, \
         version = $24, updated_at_ms = $25 WHERE id = $1 AND version = $26",
        params![
            record.id,
            &record.name,
            &record.name_key,
            &record.gender,
            &record.birthday,
            &record.phone_cipher,
            &record.phone_index,
            &record.email_cipher,
            &record.email_index,
            &record.id_kind,
            &record.id_number_cipher,
            &record.id_number_index,
            &record.address_cipher,
            &record.occupation,
            &record.income_band,
            &record.province,
            &record.city,
            &record.source_channel,
            record.home_store_id,
            &record.external_id,
            &record.preferences_json,
            &record.status,
            record.merged_into_id,
            record.version,
            record.updated_at_ms,
            expected_version
        ],
    )?;
    Ok(changed == 1)
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<CustomerRecord>> {
    conn.query_optional(&format!("SELECT {COLUMNS} FROM customers c WHERE c.id = $1"), params![id], from_row)
}

/// A customer's birthday as stored (`YYYY-MM-DD`), without reading the rest of the row.
pub fn birthday(conn: &mut Conn<'_>, id: i64) -> StoreResult<Option<String>> {
    Ok(conn
        .query_optional("SELECT birthday FROM customers WHERE id = $1", params![id], |row| {
            row.get::<Option<String>>(0)
        })?
        .flatten())
}

// Queries that use a partial index (`… WHERE column IS NOT NULL`) repeat that condition, so
// the planner can use the index without looking at the bound value.

/// Which blind-indexed field to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexedField {
    Phone,
    Email,
    IdNumber,
}

impl IndexedField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
            Self::IdNumber => "id_number",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::Phone => "phone_index",
            Self::Email => "email_index",
            Self::IdNumber => "id_number_index",
        }
    }
}

/// Customers (not merged away) whose field has this blind index, oldest first.
pub fn find_by_index(
    conn: &mut Conn<'_>,
    field: IndexedField,
    index: &[u8],
) -> StoreResult<Vec<CustomerRecord>> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM customers c WHERE c.{0} = $1 AND c.{0} IS NOT NULL AND c.status <> 'merged' \
             ORDER BY c.id LIMIT 100",
            field.column()
        ),
        params![index],
        from_row,
    )
}

/// Ids of customers (not merged away) holding this blind index; for duplicate checks.
pub fn ids_by_index(conn: &mut Conn<'_>, field: IndexedField, index: &[u8]) -> StoreResult<Vec<i64>> {
    conn.query(
        &format!(
            "SELECT id FROM customers WHERE {0} = $1 AND {0} IS NOT NULL AND status <> 'merged' ORDER BY id LIMIT 100",
            field.column()
        ),
        params![index],
        |row| row.get(0),
    )
}

pub fn find_by_external_id(
    conn: &mut Conn<'_>,
    source_channel: &str,
    external_id: &str,
) -> StoreResult<Option<CustomerRecord>> {
    conn.query_optional(
        &format!(
            "SELECT {COLUMNS} FROM customers c WHERE c.source_channel = $1 AND c.external_id = $2 \
             AND c.external_id IS NOT NULL"
        ),
        params![source_channel, external_id],
        from_row,
    )
}

/// Every external id → customer id (merged customers resolve to their survivor), for
/// resolving references in bulk imports. An external id used by two customers (from two
/// source channels) maps to `-1`: ambiguous. Memory is proportional to the customers.
pub fn external_id_map(conn: &mut Conn<'_>) -> StoreResult<HashMap<String, i64>> {
    let mut map = HashMap::new();
    conn.for_each(
        "SELECT external_id, coalesce(merged_into_id, id) FROM customers WHERE external_id IS NOT NULL",
        params![],
        |row| {
            let (external, owner): (String, i64) = (row.get(0)?, row.get(1)?);
            map.entry(external)
                .and_modify(|existing| {
                    if *existing != owner {
                        *existing = -1
                    }
                })
                .or_insert(owner);
            Ok(())
        },
    )?;
    Ok(map)
}

/// Every blind index of one field → customer id, for resolving references in bulk imports;
/// an index held by two customers maps to `-1`: ambiguous.
pub fn index_map(conn: &mut Conn<'_>, field: IndexedField) -> StoreResult<HashMap<Vec<u8>, i64>> {
    let mut map = HashMap::new();
    conn.for_each(
        &format!(
            "SELECT {0}, id FROM customers WHERE {0} IS NOT NULL AND status <> 'merged'",
            field.column()
        ),
        params![],
        |row| {
            let (key, id): (Vec<u8>, i64) = (row.get(0)?, row.get(1)?);
            map.entry(key)
                .and_modify(|existing| {
                    if *existing != id {
                        *existing = -1
                    }
                })
                .or_insert(id);
            Ok(())
        },
    )?;
    Ok(map)
}

/// How a customer list is ordered and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerCursor {
    /// Newest first: ids below this one.
    BeforeId(i64),
    /// Name order: after this (name key, id).
    AfterName(String, i64),
}

#[derive(Debug, Clone, Default)]
pub struct CustomerQuery {
    /// Name prefix, lower-cased; orders the result by name.
    pub name_prefix: Option<String>,
    pub tag: Option<String>,
    pub home_store_id: Option<i64>,
    pub city: Option<String>,
    pub include_merged: bool,
    pub cursor: Option<CustomerCursor>,
    pub limit: i64,
}

/// Collects parameters and hands out their `$n` placeholders.
struct Binder {
    values: Vec<Value<'static>>,
}

impl Binder {
    fn bind(&mut self, value: Value<'static>) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }
}

/// One page of customers matching the query, newest first (or by name for a prefix search).
pub fn search(conn: &mut Conn<'_>, query: &CustomerQuery) -> StoreResult<Vec<CustomerRecord>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut binder = Binder { values: Vec::new() };
    let mut from = String::from("customers c");
    if let Some(tag) = &query.tag {
        from.push_str(" JOIN customer_tags t ON t.customer_id = c.id");
        conditions.push(format!("t.tag = {}", binder.bind(Value::from(tag.clone()))));
    }
    if let Some(store) = query.home_store_id {
        conditions.push(format!("c.home_store_id = {}", binder.bind(Value::I64(store))));
    }
    if let Some(city) = &query.city {
        conditions.push(format!("c.city = {}", binder.bind(Value::from(city.clone()))));
    }
    if !query.include_merged {
        conditions.push("c.status <> 'merged'".into());
    }
    let order = if let Some(prefix) = &query.name_prefix {
        let low = binder.bind(Value::from(prefix.clone()));
        let high = binder.bind(Value::from(format!("{prefix}\u{10FFFF}")));
        conditions.push(format!("c.name_key >= {low} AND c.name_key < {high}"));
        if let Some(CustomerCursor::AfterName(name_key, id)) = &query.cursor {
            let key = binder.bind(Value::from(name_key.clone()));
            let after = binder.bind(Value::I64(*id));
            conditions.push(format!("(c.name_key > {key} OR (c.name_key = {key} AND c.id > {after}))"));
        }
        "c.name_key, c.id"
    } else {
        if let Some(CustomerCursor::BeforeId(id)) = &query.cursor {
            conditions.push(format!("c.id < {}", binder.bind(Value::I64(*id))));
        }
        "c.id DESC"
    };
    let limit = binder.bind(Value::I64(bounded(query.limit)));
    let where_clause =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql = format!("SELECT {COLUMNS} FROM {from} {where_clause} ORDER BY {order} LIMIT {limit}");
    conn.query(&sql, &binder.values, from_row)
}

/// About how many customers are stored, without counting them: the highest id.
pub fn size_estimate(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one("SELECT coalesce(max(id), 0) FROM customers", params![], |row| row.get(0))
}

pub fn count_active(conn: &mut Conn<'_>) -> StoreResult<i64> {
    conn.query_one("SELECT count(*) FROM customers WHERE status = 'active'", params![], |row| row.get(0))
}

/// Tags of the given customers, each list sorted.
pub fn tags_of(conn: &mut Conn<'_>, customer_ids: &[i64]) -> StoreResult<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for chunk in customer_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|index| format!("${index}")).collect();
        let values: Vec<Value<'_>> = chunk.iter().map(|id| Value::I64(*id)).collect();
        conn.for_each(
            &format!(
                "SELECT customer_id, tag FROM customer_tags WHERE customer_id IN ({}) ORDER BY customer_id, tag",
                placeholders.join(", ")
            ),
            &values,
            |row| {
                out.entry(row.get(0)?).or_default().push(row.get(1)?);
                Ok(())
            },
        )?;
    }
    Ok(out)
}

/// Replaces a customer's tags with `tags`.
pub fn set_tags(conn: &mut Conn<'_>, customer_id: i64, tags: &[String], now_ms: i64) -> StoreResult<()> {
    conn.execute("DELETE FROM customer_tags WHERE customer_id = $1", params![customer_id])?;
    add_tags(conn, customer_id, tags, now_ms)
}

/// Adds tags a customer does not have yet.
pub fn add_tags(conn: &mut Conn<'_>, customer_id: i64, tags: &[String], now_ms: i64) -> StoreResult<()> {
    for tag in tags {
        conn.execute(
            "INSERT INTO customer_tags (customer_id, tag, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (customer_id, tag) DO NOTHING",
            params![customer_id, tag, now_ms],
        )?;
    }
    Ok(())
}

/// Bulk tag insert for imports: `(customer_id, tag)` pairs of new customers.
pub fn insert_tags_many(conn: &mut Conn<'_>, pairs: &[(i64, String)], now_ms: i64) -> StoreResult<u64> {
    let rows: Vec<Vec<Value<'_>>> = pairs
        .iter()
        .map(|(id, tag)| vec![Value::I64(*id), Value::from(tag.as_str()), Value::I64(now_ms)])
        .collect();
    conn.insert_rows("customer_tags", &["customer_id", "tag", "created_at_ms"], &rows)
}

/// Most used tags with their customer counts.
pub fn tag_counts(conn: &mut Conn<'_>, limit: i64) -> StoreResult<Vec<(String, i64)>> {
    conn.query(
        "SELECT tag, count(*) AS customers FROM customer_tags GROUP BY tag ORDER BY customers DESC, tag LIMIT $1",
        params![bounded(limit)],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    pub id: i64,
    pub customer_id: i64,
    pub channel: String,
    pub granted: bool,
    pub source: String,
    pub recorded_by: String,
    pub recorded_at_ms: i64,
}

pub fn insert_consent(conn: &mut Conn<'_>, record: &ConsentRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO customer_consents (customer_id, channel, granted, source, recorded_by, recorded_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        params![
            record.customer_id,
            &record.channel,
            i64::from(record.granted),
            &record.source,
            &record.recorded_by,
            record.recorded_at_ms
        ],
        |row| row.get(0),
    )
}

/// Every consent change of a customer, oldest first (the latest per channel is in force).
pub fn consents_of(conn: &mut Conn<'_>, customer_id: i64) -> StoreResult<Vec<ConsentRecord>> {
    conn.query(
        "SELECT id, customer_id, channel, granted, source, recorded_by, recorded_at_ms FROM customer_consents \
         WHERE customer_id = $1 ORDER BY id LIMIT 1000",
        params![customer_id],
        |row| {
            Ok(ConsentRecord {
                id: row.get(0)?,
                customer_id: row.get(1)?,
                channel: row.get(2)?,
                granted: row.get(3)?,
                source: row.get(4)?,
                recorded_by: row.get(5)?,
                recorded_at_ms: row.get(6)?,
            })
        },
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: i64,
    pub customer_id: i64,
    pub occurred_at_ms: i64,
    pub kind: String,
    pub channel: String,
    pub store_id: Option<i64>,
    pub detail_json: String,
    pub recorded_by: String,
    pub created_at_ms: i64,
}

pub fn insert_event(conn: &mut Conn<'_>, record: &EventRecord) -> StoreResult<i64> {
    conn.query_one(
        "INSERT INTO customer_events (customer_id, occurred_at_ms, kind, channel, store_id, detail_json, recorded_by, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        params![
            record.customer_id,
            record.occurred_at_ms,
            &record.kind,
            &record.channel,
            record.store_id,
            &record.detail_json,
            &record.recorded_by,
            record.created_at_ms
        ],
        |row| row.get(0),
    )
}

/// A customer's events, newest first, strictly before `(before_ms, before_id)` when given.
pub fn events_of(
    conn: &mut Conn<'_>,
    customer_id: i64,
    before: Option<(i64, i64)>,
    limit: i64,
) -> StoreResult<Vec<EventRecord>> {
    let (before_ms, before_id) = before.unwrap_or((i64::MAX, i64::MAX));
    conn.query(
        "SELECT id, customer_id, occurred_at_ms, kind, channel, store_id, detail_json, recorded_by, created_at_ms \
         FROM customer_events WHERE customer_id = $1 AND (occurred_at_ms < $2 OR (occurred_at_ms = $2 AND id < $3)) \
         ORDER BY occurred_at_ms DESC, id DESC LIMIT $4",
        params![customer_id, before_ms, before_id, bounded(limit)],
        |row| {
            Ok(EventRecord {
                id: row.get(0)?,
                customer_id: row.get(1)?,
                occurred_at_ms: row.get(2)?,
                kind: row.get(3)?,
                channel: row.get(4)?,
                store_id: row.get(5)?,
                detail_json: row.get(6)?,
                recorded_by: row.get(7)?,
                created_at_ms: row.get(8)?,
            })
        },
    )
}

/// What a merge moved from one customer to another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reassigned {
    pub tags: u64,
    pub consents: u64,
    pub events: u64,
    pub purchases: u64,
}

/// Moves everything that belongs to `from_id` to `to_id`: tags (union), consent history,
/// timeline events and purchases. Later capabilities (cards, points) add their tables here.
pub fn reassign(conn: &mut Conn<'_>, from_id: i64, to_id: i64) -> StoreResult<Reassigned> {
    let tags = conn.execute(
        "INSERT INTO customer_tags (customer_id, tag, created_at_ms) SELECT CAST($2 AS BIGINT), tag, created_at_ms FROM customer_tags \
         WHERE customer_id = $1 ON CONFLICT (customer_id, tag) DO NOTHING",
        params![from_id, to_id],
    )?;
    conn.execute("DELETE FROM customer_tags WHERE customer_id = $1", params![from_id])?;
    let consents = conn.execute(
        "UPDATE customer_consents SET customer_id = $2 WHERE customer_id = $1",
        params![from_id, to_id],
    )?;
    let events = conn.execute(
        "UPDATE customer_events SET customer_id = $2 WHERE customer_id = $1",
        params![from_id, to_id],
    )?;
    let purchases = conn
        .execute("UPDATE purchases SET customer_id = $2 WHERE customer_id = $1", params![from_id, to_id])?;
    Ok(Reassigned { tags, consents, events, purchases })
}

/// A blind index value held by more than one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateGroup {
    pub field: IndexedField,
    pub customer_ids: Vec<i64>,
}

/// Groups of customers sharing a phone, e-mail or ID number, most recent groups first.
pub fn duplicate_groups(conn: &mut Conn<'_>, limit: i64) -> StoreResult<Vec<DuplicateGroup>> {
    let mut groups = Vec::new();
    for field in [IndexedField::Phone, IndexedField::IdNumber, IndexedField::Email] {
        let column = field.column();
        let keys: Vec<Vec<u8>> = conn.query(
            &format!(
                "SELECT {column} FROM customers WHERE {column} IS NOT NULL AND status <> 'merged' \
                 GROUP BY {column} HAVING count(*) > 1 ORDER BY max(id) DESC LIMIT $1"
            ),
            params![bounded(limit)],
            |row| row.get(0),
        )?;
        for key in keys {
            let customer_ids = ids_by_index(conn, field, &key)?;
            groups.push(DuplicateGroup { field, customer_ids });
        }
    }
    groups.truncate(bounded(limit) as usize);
    Ok(groups)
}

fn in_list(count: usize, first: usize) -> String {
    (first..first + count).map(|index| format!("${index}")).collect::<Vec<_>>().join(", ")
}

/// The secondary indexes of customers and their tags that a bulk load defers (see
/// [`Conn::defer_index`]): those written at random places. Indexes that new rows only
/// append to (consents by customer id) or touch in a few places (customers by home store)
/// cost less kept than rebuilt, which reads the whole table once per index.
pub const BULK_DEFERRABLE_INDEXES: [&str; 5] = [
    "customers_phone_index",
    "customers_email_index",
    "customers_id_number_index",
    "customers_name_key",
    "customer_tags_tag",
];

/// Every blind index of one field → the oldest customer (not merged away) holding it: what
/// a bulk load checks duplicates against once its indexes are deferred. Memory grows with
/// the customers.
pub fn oldest_by_index(conn: &mut Conn<'_>, field: IndexedField) -> StoreResult<HashMap<Vec<u8>, i64>> {
    let mut map = HashMap::new();
    conn.for_each(
        &format!(
            "SELECT {0}, min(id) FROM customers WHERE {0} IS NOT NULL AND status <> 'merged' GROUP BY {0}",
            field.column()
        ),
        params![],
        |row| {
            map.insert(row.get(0)?, row.get(1)?);
            Ok(())
        },
    )?;
    Ok(map)
}

/// Every (source channel, external id) → its customer.
pub fn by_external_id(conn: &mut Conn<'_>) -> StoreResult<HashMap<(String, String), i64>> {
    let mut map = HashMap::new();
    conn.for_each(
        "SELECT source_channel, external_id, id FROM customers WHERE external_id IS NOT NULL",
        params![],
        |row| {
            map.insert((row.get(0)?, row.get(1)?), row.get(2)?);
            Ok(())
        },
    )?;
    Ok(map)
}

/// For a batch of blind indexes, the oldest customer (not merged away) holding each.
pub fn match_indexes(
    conn: &mut Conn<'_>,
    field: IndexedField,
    keys: &[Vec<u8>],
) -> StoreResult<HashMap<Vec<u8>, i64>> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(500) {
        let values: Vec<Value<'_>> = chunk.iter().map(|key| Value::from(key.as_slice())).collect();
        let column = field.column();
        conn.for_each(
            &format!(
                "SELECT {column}, min(id) FROM customers WHERE {column} IN ({}) AND {column} IS NOT NULL \
                 AND status <> 'merged' GROUP BY {column}",
                in_list(chunk.len(), 1)
            ),
            &values,
            |row| {
                found.insert(row.get(0)?, row.get(1)?);
                Ok(())
            },
        )?;
    }
    Ok(found)
}

/// For a batch of external ids of one source channel, the customer holding each.
pub fn match_external_ids(
    conn: &mut Conn<'_>,
    source_channel: &str,
    external_ids: &[String],
) -> StoreResult<HashMap<String, i64>> {
    let mut found = HashMap::new();
    for chunk in external_ids.chunks(500) {
        let mut values: Vec<Value<'_>> = vec![Value::from(source_channel)];
        values.extend(chunk.iter().map(|id| Value::from(id.as_str())));
        conn.for_each(
            &format!(
                "SELECT external_id, id FROM customers WHERE source_channel = $1 AND external_id IN ({}) \
                 AND external_id IS NOT NULL",
                in_list(chunk.len(), 2)
            ),
            &values,
            |row| {
                found.insert(row.get(0)?, row.get(1)?);
                Ok(())
            },
        )?;
    }
    Ok(found)
}

/// Bulk consent insert for imports.
pub fn insert_consents_many(conn: &mut Conn<'_>, records: &[ConsentRecord]) -> StoreResult<u64> {
    let rows: Vec<Vec<Value<'_>>> = records
        .iter()
        .map(|record| {
            vec![
                Value::I64(record.customer_id),
                Value::from(record.channel.as_str()),
                Value::I64(i64::from(record.granted)),
                Value::from(record.source.as_str()),
                Value::from(record.recorded_by.as_str()),
                Value::I64(record.recorded_at_ms),
            ]
        })
        .collect();
    conn.insert_rows(
        "customer_consents",
        &["customer_id", "channel", "granted", "source", "recorded_by", "recorded_at_ms"],
        &rows,
    )
}

/// Every customer id and, for merged ones, the survivor they now belong to.
pub fn id_owners(conn: &mut Conn<'_>) -> StoreResult<HashMap<i64, i64>> {
    let mut map = HashMap::new();
    conn.for_each("SELECT id, coalesce(merged_into_id, id) FROM customers", params![], |row| {
        map.insert(row.get(0)?, row.get(1)?);
        Ok(())
    })?;
    Ok(map)
}
