//! Purchase transaction import: plain purchase records (customer, store, time, amount,
//! category, channel, external id). Customers are referenced by id, external id or phone;
//! local times are read in each store's time zone; a record whose external id is already
//! stored is skipped, so a re-sent file does not count twice.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use cardcrm_domain::{
    FieldErrors,
    customer::Channel,
    date, limits,
    money::{Currency, parse_amount_minor},
    phone::Phone,
    text,
};
use cardcrm_store::{
    Conn, DeferredIndex, ForeignKeys, StoreError,
    repo::{
        customers::{self as customer_repo, IndexedField},
        organisation,
        purchases::{self as repo, PurchaseRecord},
    },
};
use jiff::tz::TimeZone;

use super::{
    BatchOutcome, Checked, Column, ColumnMap, Fields, ImportKind, ImportOptions, ImportProgress,
    ImportReport, ImportSource, RejectSink, Staged, customers::CustomerImport, push,
};
use crate::{
    Services,
    error::{ServiceError, ServiceResult},
    identity::{Access, perm},
};

const CUSTOMER_ID: usize = 0;
const CUSTOMER_EXTERNAL_ID: usize = 1;
const PHONE: usize = 2;
const STORE_CODE: usize = 3;
const OCCURRED_AT: usize = 4;
const AMOUNT: usize = 5;
const CURRENCY: usize = 6;
const CATEGORY: usize = 7;
const CHANNEL: usize = 8;
const EXTERNAL_ID: usize = 9;

const COLUMNS: &[Column] = &[
    Column { name: "customer_id", aliases: &["客户id", "客户号"] },
    Column {
        name: "customer_external_id", aliases: &["会员编号", "会员号", "客户编号", "member_no"]
    },
    Column { name: "phone", aliases: &["手机", "手机号", "手机号码"] },
    Column { name: "store_code", aliases: &["门店", "门店编码", "门店代码", "store"] },
    Column {
        name: "occurred_at", aliases: &["时间", "交易时间", "消费时间", "日期", "timestamp", "date"]
    },
    Column { name: "amount", aliases: &["金额", "消费金额", "交易金额"] },
    Column { name: "currency", aliases: &["币种", "货币"] },
    Column { name: "category", aliases: &["品类", "类别", "商品类别"] },
    Column { name: "channel", aliases: &["渠道"] },
    Column {
        name: "external_id", aliases: &["流水号", "交易编号", "订单号", "transaction_id", "order_id"]
    },
];

pub(crate) struct TransactionImport {
    services: Services,
    /// Rows the file probably holds, from its size.
    rows_expected: u64,
    bulk_rows_min: u64,
    now_ms: i64,
    stores: HashMap<String, (i64, TimeZone)>,
    default_store: Option<(i64, TimeZone)>,
}

/// Maps that resolve customer references, read once per import inside its transaction and
/// used by the reader for every row.
pub(crate) struct References {
    owners: HashMap<i64, i64>,
    external: HashMap<String, i64>,
    phones: HashMap<Vec<u8>, i64>,
    import_id: i64,
}

/// The writer's state across batches.
pub(crate) struct Loading {
    /// The purchases-by-customer index, dropped for a large load and rebuilt at the end.
    deferred_index: Option<DeferredIndex>,
    /// Every customer and store the written rows reference, checked once at the end.
    customers_referenced: HashSet<i64>,
    stores_referenced: HashSet<i64>,
}

/// Bytes of a typical transaction line, to guess a file's rows from its size (low on
/// purpose: guessing too many rows only rebuilds an index a little early).
const BYTES_PER_ROW_GUESS: u64 = 48;

impl ImportKind for TransactionImport {
    const NAME: &'static str = "transactions";
    const FOREIGN_KEYS: ForeignKeys = ForeignKeys::CheckedByCaller;
    type Row = PurchaseRecord;
    const CHECK_MAY_REJECT: bool = false;
    type ReadState = ();
    type Shared = References;
    type Context = Loading;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn check_columns(map: &ColumnMap) -> ServiceResult<()> {
        let missing = |what: &str| ServiceError::BadFile {
            code: "import.missing_column",
            line: Some(1),
            message: format!("line 1: a transaction file needs {what}"),
        };
        if !(map.has(CUSTOMER_ID) || map.has(CUSTOMER_EXTERNAL_ID) || map.has(PHONE)) {
            return Err(missing("a customer_id, customer_external_id or phone column"));
        }
        if !map.has(OCCURRED_AT) {
            return Err(missing("an occurred_at column"));
        }
        if !map.has(AMOUNT) {
            return Err(missing("an amount column"));
        }
        Ok(())
    }

    fn prepare(
        &self,
        _state: &mut (),
        references: &References,
        map: &ColumnMap,
        _line: u64,
        fields: &Fields,
    ) -> Result<PurchaseRecord, FieldErrors> {
        let mut errors = FieldErrors::new();
        let get = |column| map.get(fields, column).trim();
        let customer = if !get(CUSTOMER_ID).is_empty() {
            match text::clean(get(CUSTOMER_ID)).unwrap_or_default().parse::<i64>() {
                Ok(id) if id > 0 => Some(("customer_id", references.owners.get(&id).copied())),
                _ => {
                    push(
                        &mut errors,
                        "customer_id",
                        "customer_id.invalid",
                        format!("`{}` is not a customer id", get(CUSTOMER_ID)),
                    );
                    None
                }
            }
        } else if let Some(external) = text::clean(get(CUSTOMER_EXTERNAL_ID)) {
            Some(("customer_external_id", references.external.get(&external).copied()))
        } else if !get(PHONE).is_empty() {
            errors.take("phone", Phone::parse(get(PHONE))).map(|phone| {
                let index = self.services.vault().blind_index("phone", phone.as_str());
                ("phone", references.phones.get(index.as_slice()).copied())
            })
        } else {
            push(
                &mut errors,
                "customer_id",
                "customer.missing",
                "the row names no customer (customer_id, customer_external_id or phone)".into(),
            );
            None
        };
        let customer_id = match customer {
            Some((_, Some(owner))) if owner > 0 => Some(owner),
            Some((field, Some(_))) => {
                push(
                    &mut errors,
                    field,
                    "customer.ambiguous",
                    "more than one customer matches; use customer_id".into(),
                );
                None
            }
            Some((field, None)) => {
                push(&mut errors, field, "customer.unknown", format!("no customer matches this {field}"));
                None
            }
            None => None,
        };
        let store = match text::clean(get(STORE_CODE)) {
            None => self.default_store.clone(),
            Some(code) => match self.stores.get(&code.to_uppercase()) {
                Some(store) => Some(store.clone()),
                None => {
                    push(
                        &mut errors,
                        "store_code",
                        "store.unknown",
                        format!("store code `{code}` does not exist"),
                    );
                    None
                }
            },
        };
        let zone =
            store.as_ref().map_or_else(|| self.services.default_zone().clone(), |(_, zone)| zone.clone());
        let occurred_at_ms = errors
            .take("occurred_at", date::parse_moment(get(OCCURRED_AT), &zone))
            .map(|at| at.as_millisecond());
        if occurred_at_ms.is_some_and(|at| at > self.now_ms + 5 * 60_000) {
            push(
                &mut errors,
                "occurred_at",
                "occurred_at.future",
                format!("`{}` is in the future", get(OCCURRED_AT)),
            );
        }
        let currency = match text::clean(get(CURRENCY)) {
            None => Some(self.services.currency()),
            Some(raw) => errors.take("currency", Currency::parse(&raw)),
        };
        let amount_minor =
            currency.and_then(|currency| errors.take("amount", parse_amount_minor(get(AMOUNT), currency)));
        if let Some(amount) =
            amount_minor.filter(|amount| *amount <= 0 || *amount > limits::PURCHASE_AMOUNT_MINOR_MAX)
        {
            push(
                &mut errors,
                "amount",
                "amount.out_of_range",
                format!(
                    "amount {amount} (minor units) must be positive and at most {}",
                    limits::PURCHASE_AMOUNT_MINOR_MAX
                ),
            );
        }
        let category = errors.take("category", crate::purchases::parse_category(get(CATEGORY))).flatten();
        let channel = match text::clean(get(CHANNEL)) {
            None => Some(Channel::Store),
            Some(raw) => errors.take("channel", Channel::parse(&raw)),
        };
        let external_id = errors
            .take("external_id", cardcrm_domain::customer::parse_external_id(get(EXTERNAL_ID)))
            .flatten();
        match (customer_id, occurred_at_ms, amount_minor, currency, channel) {
            (Some(customer_id), Some(occurred_at_ms), Some(amount_minor), Some(currency), Some(channel))
                if errors.is_empty() =>
            {
                Ok(PurchaseRecord {
                    id: 0,
                    customer_id,
                    store_id: store.map(|(id, _)| id),
                    occurred_at_ms,
                    amount_minor,
                    currency: currency.as_str().to_owned(),
                    category,
                    channel: channel.as_str().to_owned(),
                    external_id,
                    import_id: Some(references.import_id),
                    operation_id: None,
                    created_at_ms: self.now_ms,
                })
            }
            _ => Err(errors),
        }
    }

    fn begin(
        &self,
        conn: &mut Conn<'_>,
        map: &ColumnMap,
        import_id: i64,
    ) -> ServiceResult<(References, Loading)> {
        let references = References {
            owners: if map.has(CUSTOMER_ID) { customer_repo::id_owners(conn)? } else { HashMap::new() },
            external: if map.has(CUSTOMER_EXTERNAL_ID) {
                customer_repo::external_id_map(conn)?
            } else {
                HashMap::new()
            },
            phones: if map.has(PHONE) {
                customer_repo::index_map(conn, IndexedField::Phone)?
            } else {
                HashMap::new()
            },
            import_id,
        };
        // A random write into the customer index per row is what bounds a large load, and
        // an index built once from sorted rows costs far less, unless the table is already
        // much bigger than the file.
        let stored = repo::size_estimate(conn)?.max(0) as u64;
        let deferred_index = if super::is_bulk(self.rows_expected, stored, self.bulk_rows_min) {
            conn.defer_index(repo::CUSTOMER_INDEX)?
        } else {
            None
        };
        let loading = Loading {
            deferred_index,
            customers_referenced: HashSet::new(),
            stores_referenced: HashSet::new(),
        };
        Ok((references, loading))
    }

    fn bulk(loading: &Loading) -> bool {
        loading.deferred_index.is_some()
    }

    fn finish(&self, conn: &mut Conn<'_>, references: Loading) -> ServiceResult<()> {
        // The maps were read in this transaction, so every reference resolved to a row that
        // is still there; the database was not asked per row, so assert it here, once.
        for (table, ids) in
            [("customers", references.customers_referenced), ("stores", references.stores_referenced)]
        {
            let mut ids: Vec<i64> = ids.into_iter().collect();
            ids.sort_unstable();
            let present = cardcrm_store::repo::count_present(conn, table, &ids)?;
            if present != ids.len() as u64 {
                return Err(ServiceError::Store(StoreError::Invariant(format!(
                    "{} of the {} {table} referenced by imported purchases do not exist",
                    ids.len() as u64 - present,
                    ids.len()
                ))));
            }
        }
        if let Some(index) = references.deferred_index {
            conn.restore_index(index)?;
        }
        Ok(())
    }

    fn check(
        &self,
        _conn: &mut Conn<'_>,
        _loading: &mut Loading,
        rows: Vec<Staged<PurchaseRecord>>,
    ) -> ServiceResult<Checked<PurchaseRecord>> {
        // Customers were resolved by the reader; a purchase already stored is skipped on write.
        Ok((rows, Vec::new()))
    }

    fn write(
        &self,
        conn: &mut Conn<'_>,
        references: &mut Loading,
        rows: Vec<Staged<PurchaseRecord>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()> {
        let records: Vec<PurchaseRecord> = rows.into_iter().map(|staged| staged.row).collect();
        for record in &records {
            references.customers_referenced.insert(record.customer_id);
            if let Some(store_id) = record.store_id {
                references.stores_referenced.insert(store_id);
            }
        }
        let inserted = repo::insert_many(conn, &records)?;
        outcome.inserted += inserted;
        outcome.skipped += records.len() as u64 - inserted;
        Ok(())
    }
}

impl Services {
    async fn store_codes(&self) -> ServiceResult<HashMap<String, (i64, TimeZone)>> {
        let stores = self.database().read(organisation::list).await?;
        Ok(stores
            .into_iter()
            .map(|store| {
                let zone = TimeZone::get(&store.time_zone).unwrap_or_else(|_| self.default_zone().clone());
                (store.code, (store.id, zone))
            })
            .collect())
    }

    fn default_store(
        stores: &HashMap<String, (i64, TimeZone)>,
        code: Option<&str>,
        scope: Option<i64>,
    ) -> ServiceResult<Option<(i64, TimeZone)>> {
        match code {
            Some(code) => stores.get(&code.trim().to_uppercase()).cloned().map(Some).ok_or_else(|| {
                ServiceError::invalid("store", "store.unknown", format!("store code `{code}` does not exist"))
            }),
            None => Ok(scope.and_then(|id| stores.values().find(|(store_id, _)| *store_id == id).cloned())),
        }
    }

    /// Imports customers from a CSV or XLSX file.
    pub async fn import_customers(
        &self,
        access: Access<'_, perm::CustomerImport>,
        options: ImportOptions,
        source: ImportSource,
        progress: Arc<ImportProgress>,
        rejects: RejectSink,
    ) -> ServiceResult<ImportReport> {
        let stores = self.store_codes().await?;
        let default_store =
            Self::default_store(&stores, options.default_store.as_deref(), access.scope.store_id())?;
        access.require_store(default_store.as_ref().map(|(id, _)| *id))?;
        super::whole_business(access.identity())?;
        let kind = Arc::new(CustomerImport {
            services: self.clone(),
            rows_expected: source.size().div_ceil(super::customers::BYTES_PER_ROW_GUESS),
            bulk_rows_min: self.settings().import.bulk_rows_min,
            id_block_size: self.settings().import.batch_rows,
            identity: access.identity().clone(),
            today: self.today(),
            now_ms: self.now_ms(),
            stores: stores.into_iter().map(|(code, (id, _))| (code, id)).collect(),
            default_store_id: default_store.map(|(id, _)| id),
            policy: options.on_duplicate,
        });
        self.run_import(access.identity(), kind, options, source, progress, rejects).await
    }

    /// Imports purchase transactions from a CSV or XLSX file.
    pub async fn import_transactions(
        &self,
        access: Access<'_, perm::TransactionImport>,
        options: ImportOptions,
        source: ImportSource,
        progress: Arc<ImportProgress>,
        rejects: RejectSink,
    ) -> ServiceResult<ImportReport> {
        super::whole_business(access.identity())?;
        let stores = self.store_codes().await?;
        let default_store = Self::default_store(&stores, options.default_store.as_deref(), None)?;
        let kind = Arc::new(TransactionImport {
            services: self.clone(),
            rows_expected: source.size().div_ceil(BYTES_PER_ROW_GUESS),
            bulk_rows_min: self.settings().import.bulk_rows_min,
            now_ms: self.now_ms(),
            stores,
            default_store,
        });
        self.run_import(access.identity(), kind, options, source, progress, rejects).await
    }
}
