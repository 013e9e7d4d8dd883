//! Opening points balances 积分迁移 from the system a business leaves behind: one row per
//! member (or per lot, to keep several expiry dates), each credited as a points adjustment
//! with its own lot and expiry. A row's `reference` (the old system's record number) makes
//! a second run of the same file credit nothing twice.

use std::collections::HashMap;

use cardcrm_domain::{
    FieldErrors,
    date::parse_date,
    loyalty::{POINTS_MAX, Programme},
    text,
};
use cardcrm_store::{Conn, repo::loyalty as loyalty_repo};
use jiff::{ToSpan, tz::TimeZone};

use super::{
    BatchOutcome, Checked, Column, ColumnMap, DuplicatePolicy, Fields, Holder, ImportKind, Staged, push,
};
use crate::{
    Services,
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
    ledger::Actor,
    loyalty::{Adjustment, adjust, programme_at},
};

const CUSTOMER_ID: usize = 0;
const PHONE: usize = 1;
const POINTS: usize = 2;
const EXPIRES_ON: usize = 3;
const REFERENCE: usize = 4;
const REASON: usize = 5;

const COLUMNS: &[Column] = &[
    Column { name: "customer_id", aliases: &["客户编号", "会员编号"] },
    Column { name: "phone", aliases: &["手机号", "手机", "mobile"] },
    Column { name: "points", aliases: &["积分", "积分余额", "可用积分"] },
    Column { name: "expires_on", aliases: &["到期日", "积分有效期", "有效期至", "expires_at"] },
    Column { name: "reference", aliases: &["原单号", "流水号", "记录编号", "external_id"] },
    Column { name: "reason", aliases: &["备注", "说明"] },
];

/// Where the reference of every imported row is kept (with the sales of offline tills, under
/// a key of its own), so that a row is never credited twice.
const REFERENCE_KEY: &str = "import:points";
/// The reason a row without one is recorded with.
const REASON_DEFAULT: &str = "opening balance (import)";
const REASON_LENGTH_MAX: usize = 200;
const REFERENCE_LENGTH_MAX: usize = 64;

pub(crate) struct PointsRow {
    holder: Holder,
    customer_id: i64,
    points: i64,
    expires_at_ms: Option<i64>,
    reference: Option<String>,
    reason: String,
    /// Its reference was imported before (and the policy is to skip it).
    imported_before: bool,
}

pub(crate) struct PointsImport {
    services: Services,
    identity: Identity,
    now_ms: i64,
    zone: TimeZone,
    policy: DuplicatePolicy,
}

/// The writer's state: the programme the lots are made under, and who writes them.
pub(crate) struct PointsContext {
    programme: std::sync::Arc<Programme>,
    actor: Actor,
}

/// References seen earlier in the file, with their line.
#[derive(Default)]
pub(crate) struct SeenReferences(HashMap<String, u64>);

impl ImportKind for PointsImport {
    const NAME: &'static str = "points";
    type Row = PointsRow;
    type ReadState = SeenReferences;
    type Shared = ();
    type Context = PointsContext;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn check_columns(map: &ColumnMap) -> ServiceResult<()> {
        if map.has(POINTS) && (map.has(CUSTOMER_ID) || map.has(PHONE)) {
            Ok(())
        } else {
            Err(ServiceError::BadFile {
                code: "import.missing_column",
                line: Some(1),
                message: "line 1: a points file needs points, and customer_id or phone".into(),
            })
        }
    }

    fn prepare(
        &self,
        seen: &mut SeenReferences,
        _shared: &(),
        map: &ColumnMap,
        line: u64,
        fields: &Fields,
    ) -> Result<Self::Row, FieldErrors> {
        let mut errors = FieldErrors::new();
        let cell = |column: usize| text::clean(map.get(fields, column));
        let holder = Holder::parse(&self.services, &mut errors, cell(CUSTOMER_ID), cell(PHONE));
        let points = match cell(POINTS) {
            None => {
                push(&mut errors, "points", "required", "points is required".into());
                None
            }
            Some(raw) => match raw.replace(',', "").parse::<i64>() {
                Ok(points) if (1..=POINTS_MAX).contains(&points) => Some(points),
                _ => {
                    let message = format!("`{raw}` is not a whole number of points from 1 to {POINTS_MAX}");
                    push(&mut errors, "points", "points.out_of_range", message);
                    None
                }
            },
        };
        // A date: the points last through that day in the business's time zone.
        let expires_at_ms = cell(EXPIRES_ON).and_then(|raw| {
            let date = errors.take("expires_on", parse_date(&raw).map_err(|error| error.at("expires_on")))?;
            let end = date.checked_add(1.day()).ok().and_then(|next| next.to_zoned(self.zone.clone()).ok());
            match end.map(|end| end.timestamp().as_millisecond()) {
                Some(end_ms) if end_ms > self.now_ms => Some(end_ms),
                _ => {
                    let message = format!("{date} has passed: expired points are not carried over");
                    push(&mut errors, "expires_on", "expires_on.past", message);
                    None
                }
            }
        });
        let reference = cell(REFERENCE);
        if let Some(reference) = &reference {
            if reference.chars().count() > REFERENCE_LENGTH_MAX {
                let message = format!("a reference is at most {REFERENCE_LENGTH_MAX} characters");
                push(&mut errors, "reference", "reference.too_long", message);
            } else if let Some(first) = seen.0.get(reference) {
                let message = format!("`{reference}` is on line {first} already");
                push(&mut errors, "reference", "reference.duplicate_in_file", message);
            } else {
                seen.0.insert(reference.clone(), line);
            }
        }
        let reason = cell(REASON).unwrap_or_else(|| REASON_DEFAULT.to_owned());
        if reason.chars().count() > REASON_LENGTH_MAX {
            let message = format!("a reason is at most {REASON_LENGTH_MAX} characters");
            push(&mut errors, "reason", "reason.too_long", message);
        }
        match (holder, points) {
            (Some(holder), Some(points)) if errors.is_empty() => Ok(PointsRow {
                holder,
                customer_id: 0,
                points,
                expires_at_ms,
                reference,
                reason,
                imported_before: false,
            }),
            _ => Err(errors),
        }
    }

    fn begin(
        &self,
        conn: &mut Conn<'_>,
        _map: &ColumnMap,
        _import_id: i64,
    ) -> ServiceResult<((), PointsContext)> {
        let programme = programme_at(conn, self.now_ms)?;
        Ok(((), PointsContext { programme, actor: Actor::of(&self.identity) }))
    }

    fn check(
        &self,
        conn: &mut Conn<'_>,
        _context: &mut PointsContext,
        rows: Vec<Staged<Self::Row>>,
    ) -> ServiceResult<Checked<Self::Row>> {
        let mut keep = Vec::new();
        let mut rejected = Vec::new();
        for mut staged in rows {
            let reject = |staged, field: &str, code: &'static str, message: String| {
                let mut errors = FieldErrors::new();
                push(&mut errors, field, code, message);
                (staged, errors)
            };
            // A merged customer's points go to whoever they were merged into.
            let Some(customer_id) = staged.row.holder.resolve(conn)? else {
                let field = staged.row.holder.field();
                rejected.push(reject(staged, field, "customer.unknown", "no customer matches".into()));
                continue;
            };
            staged.row.customer_id = customer_id;
            if let Some(reference) = &staged.row.reference
                && let Some(operation_id) = loyalty_repo::sale_operation(conn, REFERENCE_KEY, reference)?
            {
                if self.policy == DuplicatePolicy::Error {
                    let message = format!("`{reference}` was imported before (operation {operation_id})");
                    rejected.push(reject(staged, "reference", "points.already_imported", message));
                    continue;
                }
                staged.row.imported_before = true;
            }
            keep.push(staged);
        }
        Ok((keep, rejected))
    }

    fn write(
        &self,
        conn: &mut Conn<'_>,
        context: &mut PointsContext,
        rows: Vec<Staged<Self::Row>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()> {
        for staged in rows {
            let row = staged.row;
            if row.imported_before {
                outcome.skipped += 1;
                continue;
            }
            let adjustment = Adjustment {
                customer_id: row.customer_id,
                store_id: None,
                points: row.points,
                expires_at_ms: row.expires_at_ms,
                reason: &row.reason,
            };
            let operation_id =
                adjust(conn, &context.actor, &context.programme, &adjustment, self.now_ms, &self.zone)?;
            if let Some(reference) = &row.reference {
                loyalty_repo::insert_sale(conn, REFERENCE_KEY, reference, operation_id)?;
            }
            outcome.inserted += 1;
        }
        Ok(())
    }
}

impl Services {
    /// Imports opening points balances (积分迁移) from a CSV or XLSX file: each row a credit
    /// with its own lot and expiry, as a points adjustment; rows with a reference already
    /// imported are refused (or skipped with `on_duplicate` skip).
    pub async fn import_points(
        &self,
        access: Access<'_, perm::PointsAdjust>,
        options: super::ImportOptions,
        source: super::ImportSource,
        progress: std::sync::Arc<super::ImportProgress>,
        rejects: super::RejectSink,
    ) -> ServiceResult<super::ImportReport> {
        super::whole_business(access.identity())?;
        let kind = std::sync::Arc::new(PointsImport {
            services: self.clone(),
            identity: access.identity().clone(),
            now_ms: self.now_ms(),
            zone: self.default_zone().clone(),
            policy: options.on_duplicate,
        });
        self.run_import(access.identity(), kind, options, source, progress, rejects).await
    }
}
