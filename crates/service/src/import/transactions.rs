//! Purchase transaction import: plain purchase records (customer, store, time, amount,
//! category, channel, external id). Customers are referenced by id, external id or phone;
//! local times are read in each store's time zone; a record whose external id is already
//! stored is skipped, so a re-sent file does not count twice.

use std::{collections::HashMap, sync::Arc};

use cardcrm_domain::{
    FieldErrors,
    customer::Channel,
    date, limits,
    money::{Currency, parse_amount_minor},
    phone::Phone,
    text,
};
use cardcrm_store::{
    Conn,
    repo::{
        customers::{self as customer_repo, IndexedField},
        organisation,
        purchases::{self as repo, PurchaseRecord},
    },
};
use jiff::tz::TimeZone;

use super::{
    BatchOutcome, Checked, Column, ColumnMap, ImportKind, ImportOptions, ImportProgress, ImportReport,
    ImportSource, RejectSink, Staged, customers::CustomerImport, push,
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

pub(crate) enum CustomerRef {
    Id(i64),
    External(String),
    Phone(Vec<u8>),
}

pub(crate) struct TransactionRow {
    customer: CustomerRef,
    record: PurchaseRecord,
}

pub(crate) struct TransactionImport {
    services: Services,
    now_ms: i64,
    stores: HashMap<String, (i64, TimeZone)>,
    default_store: Option<(i64, TimeZone)>,
}

/// Maps that resolve customer references, loaded once per import.
pub(crate) struct References {
    owners: HashMap<i64, i64>,
    external: HashMap<String, i64>,
    phones: HashMap<Vec<u8>, i64>,
    import_id: i64,
}

impl ImportKind for TransactionImport {
    const NAME: &'static str = "transactions";
    type Row = TransactionRow;
    type ReadState = ();
    type Context = References;

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
        map: &ColumnMap,
        _line: u64,
        fields: &[String],
    ) -> Result<TransactionRow, FieldErrors> {
        let mut errors = FieldErrors::new();
        let get = |column| map.get(fields, column).trim();
        let customer = if !get(CUSTOMER_ID).is_empty() {
            match text::clean(get(CUSTOMER_ID)).unwrap_or_default().parse::<i64>() {
                Ok(id) if id > 0 => Some(CustomerRef::Id(id)),
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
            Some(CustomerRef::External(external))
        } else if !get(PHONE).is_empty() {
            errors.take("phone", Phone::parse(get(PHONE))).map(|phone| {
                CustomerRef::Phone(self.services.vault().blind_index("phone", phone.as_str()).to_vec())
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
        match (customer, occurred_at_ms, amount_minor, currency, channel) {
            (Some(customer), Some(occurred_at_ms), Some(amount_minor), Some(currency), Some(channel))
                if errors.is_empty() =>
            {
                Ok(TransactionRow {
                    customer,
                    record: PurchaseRecord {
                        id: 0,
                        customer_id: 0,
                        store_id: store.map(|(id, _)| id),
                        occurred_at_ms,
                        amount_minor,
                        currency: currency.as_str().to_owned(),
                        category,
                        channel: channel.as_str().to_owned(),
                        external_id,
                        import_id: None,
                        created_at_ms: self.now_ms,
                    },
                })
            }
            _ => Err(errors),
        }
    }

    fn load(&self, conn: &mut Conn<'_>, map: &ColumnMap, import_id: i64) -> ServiceResult<References> {
        Ok(References {
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
        })
    }

    fn check(
        &self,
        _conn: &mut Conn<'_>,
        references: &mut References,
        rows: Vec<Staged<TransactionRow>>,
    ) -> ServiceResult<Checked<TransactionRow>> {
        let mut keep = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        for mut staged in rows {
            let (field, found) = match &staged.row.customer {
                CustomerRef::Id(id) => ("customer_id", references.owners.get(id).copied()),
                CustomerRef::External(external) => {
                    ("customer_external_id", references.external.get(external).copied())
                }
                CustomerRef::Phone(index) => ("phone", references.phones.get(index).copied()),
            };
            match found {
                Some(owner) if owner > 0 => {
                    staged.row.record.customer_id = owner;
                    staged.row.record.import_id = Some(references.import_id);
                    keep.push(staged);
                }
                Some(_) => {
                    let mut errors = FieldErrors::new();
                    push(
                        &mut errors,
                        field,
                        "customer.ambiguous",
                        "more than one customer matches; use customer_id".into(),
                    );
                    rejected.push((staged, errors));
                }
                None => {
                    let mut errors = FieldErrors::new();
                    push(&mut errors, field, "customer.unknown", format!("no customer matches this {field}"));
                    rejected.push((staged, errors));
                }
            }
        }
        Ok((keep, rejected))
    }

    fn write(
        &self,
        conn: &mut Conn<'_>,
        _references: &mut References,
        rows: Vec<Staged<TransactionRow>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()> {
        let records: Vec<PurchaseRecord> = rows.into_iter().map(|staged| staged.row.record).collect();
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
        if access.scope.store_id().is_some() {
            return Err(ServiceError::forbidden(
                "imports run for the whole business; ask an account without a store limit",
            ));
        }
        let kind = Arc::new(CustomerImport {
            services: self.clone(),
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
        if access.scope.store_id().is_some() {
            return Err(ServiceError::forbidden(
                "imports run for the whole business; ask an account without a store limit",
            ));
        }
        let stores = self.store_codes().await?;
        let default_store = Self::default_store(&stores, options.default_store.as_deref(), None)?;
        let kind = Arc::new(TransactionImport {
            services: self.clone(),
            now_ms: self.now_ms(),
            stores,
            default_store,
        });
        self.run_import(access.identity(), kind, options, source, progress, rejects).await
    }
}
