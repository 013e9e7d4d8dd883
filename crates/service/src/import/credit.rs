//! Credit-card account records from the issuer's core system (card centres): one row per
//! account statement, the account's own fields repeated. cardcrm stores what the issuer
//! says — limit, statement cycle, statements, repayments, days overdue — and computes none
//! of it; analysis reads it later. Account numbers are sealed like card numbers.

use cardcrm_domain::{
    FieldErrors,
    card::CardNumber,
    date::parse_date,
    money::{Currency, parse_amount_minor},
    text,
};
use cardcrm_store::{
    Conn,
    repo::{
        cards::{self as repo, CreditAccountRecord, CreditStatementRecord},
        customers as customer_repo,
    },
};
use serde::Serialize;

use super::{
    BatchOutcome, Checked, Column, ColumnMap, DuplicatePolicy, Fields, Holder, ImportKind, Staged, push,
};
use crate::{
    Services, audit,
    crypto::Seal,
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
};

const ACCOUNT_NUMBER: usize = 0;
const CUSTOMER_ID: usize = 1;
const PHONE: usize = 2;
const CREDIT_LIMIT: usize = 3;
const CURRENCY: usize = 4;
const STATEMENT_DAY: usize = 5;
const STATUS: usize = 6;
const OPENED_ON: usize = 7;
const STATEMENT_DATE: usize = 8;
const DUE_DATE: usize = 9;
const BALANCE: usize = 10;
const MINIMUM_DUE: usize = 11;
const PAID: usize = 12;
const PAID_ON: usize = 13;
const OVERDUE_DAYS: usize = 14;

const COLUMNS: &[Column] = &[
    Column { name: "account_number", aliases: &["卡号", "账号", "card_number"] },
    Column { name: "customer_id", aliases: &["客户编号"] },
    Column { name: "phone", aliases: &["手机号", "手机", "mobile"] },
    Column { name: "credit_limit", aliases: &["信用额度", "额度"] },
    Column { name: "currency", aliases: &["币种"] },
    Column { name: "statement_day", aliases: &["账单日"] },
    Column { name: "status", aliases: &["账户状态", "状态"] },
    Column { name: "opened_on", aliases: &["开户日期", "开卡日期"] },
    Column { name: "statement_date", aliases: &["账单日期"] },
    Column { name: "due_date", aliases: &["到期还款日", "还款日"] },
    Column { name: "balance", aliases: &["账单金额", "本期应还"] },
    Column { name: "minimum_due", aliases: &["最低还款额", "最低还款"] },
    Column { name: "paid", aliases: &["已还金额", "还款金额"] },
    Column { name: "paid_on", aliases: &["还款日期"] },
    Column { name: "overdue_days", aliases: &["逾期天数"] },
];

/// Account statuses the issuer may report.
pub const CREDIT_STATUSES: [&str; 4] = ["active", "frozen", "closed", "written_off"];

pub(crate) struct CreditRow {
    account: CreditAccountRecord,
    number: CardNumber,
    holder: Holder,
    statement: Option<CreditStatementRecord>,
}

pub(crate) struct CreditImport {
    services: Services,
    identity: Identity,
    now_ms: i64,
    currency: Currency,
    policy: DuplicatePolicy,
}

/// A credit account as staff see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreditAccountView {
    pub id: i64,
    pub customer_id: i64,
    /// Masked: first four and last four digits.
    pub account_number: String,
    pub credit_limit_minor: i64,
    pub currency: String,
    pub statement_day: Option<i64>,
    pub status: String,
    pub opened_on: Option<String>,
    /// Newest first, at most 12.
    pub statements: Vec<CreditStatementView>,
    /// The most days overdue in those statements.
    pub overdue_days_max: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreditStatementView {
    pub statement_date: String,
    pub due_date: String,
    pub balance_minor: i64,
    pub minimum_due_minor: i64,
    pub paid_minor: i64,
    pub paid_on: Option<String>,
    pub overdue_days: i64,
}

fn number_seal(id: i64) -> Seal {
    Seal { table: "credit_accounts", column: "account_number", row_id: id }
}

impl ImportKind for CreditImport {
    const NAME: &'static str = "credit";
    type Row = CreditRow;
    type ReadState = ();
    type Shared = ();
    type Context = i64;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn check_columns(map: &ColumnMap) -> ServiceResult<()> {
        if map.has(ACCOUNT_NUMBER) && map.has(CREDIT_LIMIT) && (map.has(CUSTOMER_ID) || map.has(PHONE)) {
            Ok(())
        } else {
            Err(ServiceError::BadFile {
                code: "import.missing_column",
                line: Some(1),
                message: "line 1: a credit file needs account_number, credit_limit, and customer_id or phone"
                    .into(),
            })
        }
    }

    fn prepare(
        &self,
        _state: &mut (),
        _shared: &(),
        map: &ColumnMap,
        _line: u64,
        fields: &Fields,
    ) -> Result<Self::Row, FieldErrors> {
        let mut errors = FieldErrors::new();
        let cell = |column: usize| text::clean(map.get(fields, column));
        let number = errors.take("account_number", CardNumber::parse(map.get(fields, ACCOUNT_NUMBER)));
        let currency = match cell(CURRENCY) {
            Some(raw) => errors.take("currency", Currency::parse(&raw)),
            None => Some(self.currency),
        };
        let money = |errors: &mut FieldErrors, field: &str, column: usize, required: bool| -> Option<i64> {
            match (cell(column), currency) {
                (Some(raw), Some(currency)) => {
                    let amount = errors
                        .take(field, parse_amount_minor(&raw, currency).map_err(|error| error.at(field)));
                    if amount.is_some_and(|amount| amount < 0) && field != "balance" {
                        push(errors, field, "amount.negative", format!("{field} cannot be negative"));
                    }
                    amount
                }
                (None, _) if required => {
                    push(errors, field, "required", format!("{field} is required"));
                    None
                }
                _ => None,
            }
        };
        let date = |errors: &mut FieldErrors, field: &str, column: usize| -> Option<String> {
            cell(column).and_then(|raw| {
                errors.take(
                    field,
                    parse_date(&raw).map(|date| date.to_string()).map_err(|error| error.at(field)),
                )
            })
        };
        let count = |errors: &mut FieldErrors,
                     field: &str,
                     column: usize,
                     range: std::ops::RangeInclusive<i64>|
         -> Option<i64> {
            let raw = cell(column)?;
            match raw.parse::<i64>() {
                Ok(value) if range.contains(&value) => Some(value),
                _ => {
                    push(
                        errors,
                        field,
                        "number.out_of_range",
                        format!("`{raw}` is not a whole number from {} to {}", range.start(), range.end()),
                    );
                    None
                }
            }
        };
        let holder = Holder::parse(&self.services, &mut errors, cell(CUSTOMER_ID), cell(PHONE));
        let credit_limit = money(&mut errors, "credit_limit", CREDIT_LIMIT, true);
        let statement_day = count(&mut errors, "statement_day", STATEMENT_DAY, 1..=31);
        let status = cell(STATUS).map(|raw| raw.to_lowercase()).unwrap_or_else(|| "active".into());
        if !CREDIT_STATUSES.contains(&status.as_str()) {
            push(
                &mut errors,
                "status",
                "status.invalid",
                format!("`{status}` is active, frozen, closed or written_off"),
            );
        }
        let opened_on = date(&mut errors, "opened_on", OPENED_ON);
        let statement_date = date(&mut errors, "statement_date", STATEMENT_DATE);
        let statement = match statement_date {
            None => None,
            Some(statement_date) => {
                let due_date = date(&mut errors, "due_date", DUE_DATE);
                if due_date.is_none() && cell(DUE_DATE).is_none() {
                    push(&mut errors, "due_date", "required", "a statement needs its due_date".into());
                }
                let balance = money(&mut errors, "balance", BALANCE, true);
                let minimum_due = money(&mut errors, "minimum_due", MINIMUM_DUE, false).unwrap_or(0);
                let paid = money(&mut errors, "paid", PAID, false).unwrap_or(0);
                let paid_on = date(&mut errors, "paid_on", PAID_ON);
                let overdue_days = count(&mut errors, "overdue_days", OVERDUE_DAYS, 0..=3_650).unwrap_or(0);
                match (due_date, balance) {
                    (Some(due_date), Some(balance_minor)) => Some(CreditStatementRecord {
                        account_id: 0,
                        statement_date,
                        due_date,
                        balance_minor,
                        minimum_due_minor: minimum_due,
                        paid_minor: paid,
                        paid_on,
                        overdue_days,
                        import_id: None,
                        created_at_ms: self.now_ms,
                    }),
                    _ => None,
                }
            }
        };
        match (number, holder, credit_limit, currency) {
            (Some(number), Some(holder), Some(credit_limit_minor), Some(currency)) if errors.is_empty() => {
                Ok(CreditRow {
                    account: CreditAccountRecord {
                        id: 0,
                        customer_id: 0,
                        account_number_cipher: Vec::new(),
                        account_number_index: self
                            .services
                            .vault()
                            .blind_index("credit_account_number", number.as_str())
                            .to_vec(),
                        account_last4: number.last4().to_owned(),
                        credit_limit_minor,
                        currency: currency.as_str().to_owned(),
                        statement_day,
                        status,
                        opened_on,
                        import_id: None,
                        updated_at_ms: self.now_ms,
                    },
                    number,
                    holder,
                    statement,
                })
            }
            _ => Err(errors),
        }
    }

    fn begin(&self, _conn: &mut Conn<'_>, _map: &ColumnMap, import_id: i64) -> ServiceResult<((), i64)> {
        Ok(((), import_id))
    }

    fn check(
        &self,
        conn: &mut Conn<'_>,
        _import_id: &mut i64,
        rows: Vec<Staged<Self::Row>>,
    ) -> ServiceResult<Checked<Self::Row>> {
        let mut keep = Vec::new();
        let mut rejected = Vec::new();
        for mut staged in rows {
            let Some(customer_id) = staged.row.holder.resolve(conn)? else {
                let mut errors = FieldErrors::new();
                let field = staged.row.holder.field();
                push(&mut errors, field, "customer.unknown", "no customer matches".into());
                rejected.push((staged, errors));
                continue;
            };
            staged.row.account.customer_id = customer_id;
            if self.policy == DuplicatePolicy::Error
                && let Some(existing) =
                    repo::credit_account_by_index(conn, &staged.row.account.account_number_index)?
                && existing.customer_id != customer_id
            {
                let mut errors = FieldErrors::new();
                push(
                    &mut errors,
                    "account_number",
                    "credit_account.other_customer",
                    format!("the account belongs to customer {}", existing.customer_id),
                );
                rejected.push((staged, errors));
                continue;
            }
            keep.push(staged);
        }
        Ok((keep, rejected))
    }

    fn write(
        &self,
        conn: &mut Conn<'_>,
        import_id: &mut i64,
        rows: Vec<Staged<Self::Row>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()> {
        for staged in rows {
            let CreditRow { mut account, number, statement, .. } = staged.row;
            account.import_id = Some(*import_id);
            let account_id = match repo::credit_account_by_index(conn, &account.account_number_index)? {
                Some(existing) => {
                    let after = CreditAccountRecord {
                        id: existing.id,
                        account_number_cipher: existing.account_number_cipher.clone(),
                        ..account
                    };
                    if after != existing {
                        repo::update_credit_account(conn, &after)?;
                        audit::append(
                            conn,
                            &self.identity,
                            self.now_ms,
                            "credit_account.update",
                            "credit_account",
                            existing.id,
                            None,
                            None,
                        )?;
                        outcome.updated += 1;
                    } else {
                        outcome.skipped += 1;
                    }
                    existing.id
                }
                None => {
                    let id = conn.allocate_ids("credit_accounts", 1)?.first().copied().ok_or_else(|| {
                        ServiceError::Store(cardcrm_store::StoreError::Invariant(
                            "no id for a credit account".into(),
                        ))
                    })?;
                    account.id = id;
                    account.account_number_cipher =
                        self.services.vault().seal(number_seal(id), number.as_str());
                    repo::insert_credit_account(conn, &account)?;
                    audit::append(
                        conn,
                        &self.identity,
                        self.now_ms,
                        "credit_account.create",
                        "credit_account",
                        id,
                        None,
                        None,
                    )?;
                    outcome.inserted += 1;
                    id
                }
            };
            if let Some(statement) = statement {
                repo::upsert_credit_statement(
                    conn,
                    &CreditStatementRecord { account_id, import_id: Some(*import_id), ..statement },
                )?;
            }
        }
        Ok(())
    }
}

impl Services {
    /// Imports credit-card account records (one row per statement) from a CSV or XLSX file.
    pub async fn import_credit(
        &self,
        access: Access<'_, perm::CustomerImport>,
        options: super::ImportOptions,
        source: super::ImportSource,
        progress: std::sync::Arc<super::ImportProgress>,
        rejects: super::RejectSink,
    ) -> ServiceResult<super::ImportReport> {
        super::whole_business(access.identity())?;
        let kind = std::sync::Arc::new(CreditImport {
            services: self.clone(),
            identity: access.identity().clone(),
            now_ms: self.now_ms(),
            currency: self.currency(),
            policy: options.on_duplicate,
        });
        self.run_import(access.identity(), kind, options, source, progress, rejects).await
    }

    /// A customer's credit-card accounts with their latest statements, numbers masked.
    pub async fn credit_accounts(
        &self,
        _access: Access<'_, perm::CardRead>,
        customer_id: i64,
    ) -> ServiceResult<Vec<CreditAccountView>> {
        let services = self.clone();
        self.database()
            .read(move |conn| {
                customer_repo::get(conn, customer_id)?
                    .ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
                let mut out = Vec::new();
                for account in repo::credit_accounts_of(conn, customer_id)? {
                    let number =
                        services.vault().open(number_seal(account.id), &account.account_number_cipher)?;
                    let statements: Vec<CreditStatementView> =
                        repo::credit_statements_of(conn, account.id, 12)?
                            .into_iter()
                            .map(|statement| CreditStatementView {
                                statement_date: statement.statement_date,
                                due_date: statement.due_date,
                                balance_minor: statement.balance_minor,
                                minimum_due_minor: statement.minimum_due_minor,
                                paid_minor: statement.paid_minor,
                                paid_on: statement.paid_on,
                                overdue_days: statement.overdue_days,
                            })
                            .collect();
                    out.push(CreditAccountView {
                        id: account.id,
                        customer_id: account.customer_id,
                        account_number: cardcrm_domain::card::mask_card_number(&number),
                        credit_limit_minor: account.credit_limit_minor,
                        currency: account.currency,
                        statement_day: account.statement_day,
                        status: account.status,
                        opened_on: account.opened_on,
                        overdue_days_max: statements
                            .iter()
                            .map(|statement| statement.overdue_days)
                            .max()
                            .unwrap_or(0),
                        statements,
                    });
                }
                Ok(out)
            })
            .await
    }
}
