//! Store import: onboarding a chain's branches from a spreadsheet.

use std::collections::HashMap;

use cardcrm_domain::{FieldErrors, limits, text};
use cardcrm_store::{
    Conn,
    repo::organisation::{self as repo, StoreRecord},
};

use super::{BatchOutcome, Checked, Column, ColumnMap, DuplicatePolicy, Fields, ImportKind, Staged, push};
use crate::{
    Services, audit,
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
    stores::{StoreView, parse_store_code},
};

const CODE: usize = 0;
const NAME: usize = 1;
const CITY: usize = 2;
const ADDRESS: usize = 3;
const TIME_ZONE: usize = 4;

const COLUMNS: &[Column] = &[
    Column { name: "code", aliases: &["门店编码", "门店代码", "store_code"] },
    Column { name: "name", aliases: &["门店名称", "名称", "门店"] },
    Column { name: "city", aliases: &["城市"] },
    Column { name: "address", aliases: &["地址"] },
    Column { name: "time_zone", aliases: &["时区", "timezone"] },
];

pub(crate) struct StoreImport {
    identity: Identity,
    now_ms: i64,
    default_zone: String,
    policy: DuplicatePolicy,
}

#[derive(Default)]
pub(crate) struct SeenCodes(HashMap<String, u64>);

impl ImportKind for StoreImport {
    const NAME: &'static str = "stores";
    type Row = (StoreRecord, Option<i64>);
    type ReadState = SeenCodes;
    type Shared = ();
    type Context = ();

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn check_columns(map: &ColumnMap) -> ServiceResult<()> {
        if map.has(CODE) && map.has(NAME) {
            Ok(())
        } else {
            Err(ServiceError::BadFile {
                code: "import.missing_column",
                line: Some(1),
                message: "line 1: a store file needs code and name columns".into(),
            })
        }
    }

    fn prepare(
        &self,
        seen: &mut SeenCodes,
        _shared: &(),
        map: &ColumnMap,
        line: u64,
        fields: &Fields,
    ) -> Result<Self::Row, FieldErrors> {
        let mut errors = FieldErrors::new();
        let code = errors.take("code", parse_store_code(map.get(fields, CODE)));
        let name = text::clean(map.get(fields, NAME));
        if name.is_none() {
            push(&mut errors, "name", "required", "name is required".into());
        }
        let bounded = |errors: &mut FieldErrors, field: &str, column: usize| {
            errors
                .take(
                    field,
                    cardcrm_domain::customer::parse_bounded_text(
                        field,
                        map.get(fields, column),
                        limits::TEXT_LENGTH_MAX,
                    ),
                )
                .flatten()
        };
        let city = bounded(&mut errors, "city", CITY);
        let address = bounded(&mut errors, "address", ADDRESS);
        let zone = text::clean(map.get(fields, TIME_ZONE)).unwrap_or_else(|| self.default_zone.clone());
        if jiff::tz::TimeZone::get(&zone).is_err() {
            push(
                &mut errors,
                "time_zone",
                "time_zone.invalid",
                format!("`{zone}` is not a time zone such as Asia/Shanghai"),
            );
        }
        if let Some(code) = &code {
            if let Some(first) = seen.0.get(code) {
                push(
                    &mut errors,
                    "code",
                    "import.duplicate_in_file",
                    format!("the same code as line {first}"),
                );
            } else {
                seen.0.insert(code.clone(), line);
            }
        }
        match (code, name) {
            (Some(code), Some(name)) if errors.is_empty() => Ok((
                StoreRecord {
                    id: 0,
                    code,
                    name,
                    city,
                    address,
                    time_zone: zone,
                    status: "active".into(),
                    created_at_ms: self.now_ms,
                    updated_at_ms: self.now_ms,
                },
                None,
            )),
            _ => Err(errors),
        }
    }

    fn begin(&self, _conn: &mut Conn<'_>, _map: &ColumnMap, _import_id: i64) -> ServiceResult<((), ())> {
        Ok(((), ()))
    }

    fn check(
        &self,
        conn: &mut Conn<'_>,
        _context: &mut (),
        rows: Vec<Staged<Self::Row>>,
    ) -> ServiceResult<Checked<Self::Row>> {
        let mut keep = Vec::new();
        let mut rejected = Vec::new();
        for mut staged in rows {
            match repo::by_code(conn, &staged.row.0.code)? {
                None => keep.push(staged),
                Some(existing)
                    if self.policy == DuplicatePolicy::Error || self.policy == DuplicatePolicy::Create =>
                {
                    let mut errors = FieldErrors::new();
                    push(
                        &mut errors,
                        "code",
                        "store.code_taken",
                        format!("store code {} is taken by store {}", existing.code, existing.id),
                    );
                    rejected.push((staged, errors));
                }
                Some(existing) => {
                    staged.row.1 = Some(existing.id);
                    keep.push(staged);
                }
            }
        }
        Ok((keep, rejected))
    }

    fn write(
        &self,
        conn: &mut Conn<'_>,
        _context: &mut (),
        rows: Vec<Staged<Self::Row>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()> {
        for staged in rows {
            let (record, existing) = staged.row;
            match existing {
                None => {
                    let id = repo::insert(conn, &record)?;
                    let view = StoreView::from(&StoreRecord { id, ..record });
                    audit::append(
                        conn,
                        &self.identity,
                        self.now_ms,
                        "store.create",
                        "store",
                        id,
                        None,
                        audit::snapshot(&view),
                    )?;
                    outcome.inserted += 1;
                }
                Some(id) if self.policy == DuplicatePolicy::Update => {
                    let Some(before) = repo::get(conn, id)? else {
                        return Err(ServiceError::not_found("store", id));
                    };
                    let after = StoreRecord {
                        id,
                        code: before.code.clone(),
                        status: before.status.clone(),
                        created_at_ms: before.created_at_ms,
                        ..record
                    };
                    repo::update(conn, &after)?;
                    audit::append(
                        conn,
                        &self.identity,
                        self.now_ms,
                        "store.update",
                        "store",
                        id,
                        audit::snapshot(&StoreView::from(&before)),
                        audit::snapshot(&StoreView::from(&after)),
                    )?;
                    outcome.updated += 1;
                }
                Some(_) => outcome.skipped += 1,
            }
        }
        Ok(())
    }
}

impl Services {
    /// Imports stores from a CSV or XLSX file (columns code, name, city, address, time_zone).
    pub async fn import_stores(
        &self,
        access: Access<'_, perm::StoreManage>,
        options: super::ImportOptions,
        source: super::ImportSource,
        progress: std::sync::Arc<super::ImportProgress>,
        rejects: super::RejectSink,
    ) -> ServiceResult<super::ImportReport> {
        super::whole_business(access.identity())?;
        let kind = std::sync::Arc::new(StoreImport {
            identity: access.identity().clone(),
            now_ms: self.now_ms(),
            default_zone: self.settings().default_time_zone.clone(),
            policy: options.on_duplicate,
        });
        self.run_import(access.identity(), kind, options, source, progress, rejects).await
    }
}
