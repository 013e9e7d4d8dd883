//! Import of customers and purchase transactions from CSV and XLSX files, with cleaning,
//! validation and a report per row (line, field, reason).
//!
//! One file is one transaction. A reader thread parses and cleans rows while the storage
//! writer checks them against the database and writes them, so memory stays bounded by the
//! batch size, not the file. By default any invalid row rolls everything back and the report
//! lists the problems; with `skip_invalid` the good rows are written and the bad ones go to a
//! reject file. A dry run does all of it and then rolls back.

pub mod credit;
pub mod customers;
pub mod points;
pub mod source;
pub mod stores;
pub mod transactions;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Instant,
};

use cardcrm_domain::{FieldError, FieldErrors};
use cardcrm_store::{
    Conn, ForeignKeys, StoreError,
    repo::{audit as audit_repo, imports as repo},
};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::Identity,
    view::{Page, cursor_decode_id, cursor_encode_id, page_limit},
};
pub use source::{Column, ColumnMap, Fields, FileFormat, ImportSource, RowReader, TextEncoding};

/// Counters a progress display can poll while an import runs.
#[derive(Debug, Default)]
pub struct ImportProgress {
    pub bytes_total: AtomicU64,
    pub bytes_read: AtomicU64,
    pub rows_read: AtomicU64,
    pub rows_written: AtomicU64,
    phase: AtomicU8,
}

/// Where an import is: after the rows are in, a large load still rebuilds an index, checks
/// its references and commits, which can take as long again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPhase {
    Reading,
    /// Rebuilding deferred indexes and checking references.
    Finishing,
    Committing,
}

impl ImportProgress {
    pub fn phase(&self) -> ImportPhase {
        match self.phase.load(Ordering::Relaxed) {
            0 => ImportPhase::Reading,
            1 => ImportPhase::Finishing,
            _ => ImportPhase::Committing,
        }
    }

    fn enter(&self, phase: ImportPhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DuplicatePolicy {
    /// A row matching an existing customer (same phone, e-mail, ID number or external id)
    /// is an error.
    #[default]
    Error,
    /// Leave the existing customer as it is and count the row as skipped.
    Skip,
    /// Update the existing customer with the row's non-empty fields.
    Update,
    /// Create a new customer anyway (find and merge the pairs later).
    Create,
}

impl DuplicatePolicy {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        match raw.trim().to_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "skip" => Ok(Self::Skip),
            "update" => Ok(Self::Update),
            "create" => Ok(Self::Create),
            _ => Err(ServiceError::invalid(
                "on_duplicate",
                "on_duplicate.invalid",
                format!("`{raw}` is not one of error, skip, update, create"),
            )),
        }
    }
}

/// How to import one file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub file_name: String,
    pub format: FileFormat,
    pub encoding: TextEncoding,
    pub dry_run: bool,
    pub skip_invalid: bool,
    pub on_duplicate: DuplicatePolicy,
    /// Store code for rows that name none.
    pub default_store: Option<String>,
}

/// One problem with one row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// The import's record (absent only when the file could not be read at all).
    pub import_id: Option<i64>,
    /// `customers` or `transactions`.
    pub kind: String,
    pub file_name: String,
    /// `committed`, `dry_run`, `rejected` (invalid rows; nothing written) or `failed`.
    pub status: String,
    pub dry_run: bool,
    pub skip_invalid: bool,
    pub encoding: String,
    /// Loaded in bulk: secondary indexes were dropped for the load and built again, sorted,
    /// before the commit (large files on SQLite).
    pub bulk_load: bool,
    pub rows_total: u64,
    pub rows_inserted: u64,
    pub rows_updated: u64,
    /// Rows left alone: duplicates under the `skip` policy, purchases already stored.
    pub rows_skipped: u64,
    pub rows_rejected: u64,
    /// The first problems found (see `errors_total` for how many in all).
    pub errors: Vec<RowError>,
    pub errors_total: u64,
    pub elapsed_ms: u64,
    /// Where the rejected rows were written (command line imports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_file: Option<String>,
}

/// Where rejected rows go: a CSV file (command line) or memory (kept with the import record
/// for download through the API). Columns: `_line`, `_errors`, then the file's own.
pub enum RejectSink {
    File { path: std::path::PathBuf, writer: Option<csv::Writer<std::fs::File>> },
    Memory { writer: csv::Writer<Vec<u8>>, rows: usize, rows_max: usize },
}

impl RejectSink {
    pub fn file(path: std::path::PathBuf) -> Self {
        Self::File { path, writer: None }
    }

    pub fn memory(rows_max: usize) -> Self {
        Self::Memory { writer: csv::Writer::from_writer(Vec::new()), rows: 0, rows_max }
    }

    fn write(&mut self, header: &[String], line: u64, errors: &str, fields: &Fields) -> ServiceResult<()> {
        let record = || {
            let mut row = vec![line.to_string(), errors.to_owned()];
            row.extend(fields.iter().map(str::to_owned));
            row
        };
        let mut heading = vec!["_line".to_owned(), "_errors".to_owned()];
        heading.extend(header.iter().cloned());
        let failed = |error: csv::Error| ServiceError::BadFile {
            code: "import.reject_file",
            line: None,
            message: format!("cannot write the reject file: {error}"),
        };
        match self {
            Self::File { path, writer } => {
                if writer.is_none() {
                    let file = std::fs::File::create(&*path).map_err(|error| ServiceError::BadFile {
                        code: "import.reject_file",
                        line: None,
                        message: format!("cannot create the reject file {}: {error}", path.display()),
                    })?;
                    let mut created = csv::Writer::from_writer(file);
                    created.write_record(&heading).map_err(failed)?;
                    *writer = Some(created);
                }
                if let Some(writer) = writer {
                    writer.write_record(record()).map_err(failed)?;
                }
            }
            Self::Memory { writer, rows, rows_max } => {
                if *rows == 0 {
                    writer.write_record(&heading).map_err(failed)?;
                }
                if *rows < *rows_max {
                    writer.write_record(record()).map_err(failed)?;
                }
                *rows += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> ServiceResult<(Option<String>, Option<String>)> {
        match self {
            Self::File { path, writer } => {
                if let Some(mut writer) = writer {
                    writer.flush().map_err(|error| ServiceError::BadFile {
                        code: "import.reject_file",
                        line: None,
                        message: format!("cannot write the reject file: {error}"),
                    })?;
                    return Ok((Some(path.display().to_string()), None));
                }
                Ok((None, None))
            }
            Self::Memory { writer, rows, .. } => {
                if rows == 0 {
                    return Ok((None, None));
                }
                let bytes = writer.into_inner().map_err(|error| ServiceError::BadFile {
                    code: "import.reject_file",
                    line: None,
                    message: format!("cannot keep the rejected rows: {error}"),
                })?;
                Ok((None, Some(String::from_utf8_lossy(&bytes).into_owned())))
            }
        }
    }
}

/// A row that passed cleaning, with what it came from.
pub struct Staged<R> {
    pub line: u64,
    pub fields: Option<Fields>,
    pub row: R,
}

/// Rows that passed a check, and rows rejected with their problems.
pub type Checked<R> = (Vec<Staged<R>>, Vec<(Staged<R>, FieldErrors)>);

/// What the writer did with a batch.
#[derive(Default)]
pub struct BatchOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub skipped: u64,
}

/// One kind of import: its columns, how a row is cleaned (reader thread, no database) and
/// how rows are checked and written (storage writer, inside the import's transaction).
///
/// What the reader needs from the database (say, every customer's external id) is loaded
/// by the writer inside the import's transaction as [`ImportKind::Shared`] and handed to
/// the reader before its first row, so rows are resolved on the reader's core and the
/// writer only writes.
pub trait ImportKind: Send + Sync + 'static {
    const NAME: &'static str;
    /// Whether SQLite checks this kind's foreign keys row by row, or the kind checks the
    /// references it wrote itself, in [`ImportKind::finish`].
    const FOREIGN_KEYS: ForeignKeys = ForeignKeys::Enforced;
    type Row: Send + 'static;
    /// Whether [`ImportKind::check`] may reject rows that prepared well (then each row's
    /// fields travel to the writer for the reject file).
    const CHECK_MAY_REJECT: bool = true;
    /// State of the reader thread across rows (e.g. to spot duplicates inside the file).
    type ReadState: Default + Send;
    /// Read by the writer inside the transaction, then used by the reader for every row.
    type Shared: Send + Sync + 'static;
    /// What the writer loads once before the first batch.
    type Context;

    fn columns() -> &'static [Column];
    /// File-level checks on the columns present.
    fn check_columns(map: &ColumnMap) -> ServiceResult<()>;
    fn prepare(
        &self,
        state: &mut Self::ReadState,
        shared: &Self::Shared,
        map: &ColumnMap,
        line: u64,
        fields: &Fields,
    ) -> Result<Self::Row, FieldErrors>;
    /// Runs first in the import's transaction: what the reader will share, and the writer's
    /// own state across batches.
    fn begin(
        &self,
        conn: &mut Conn<'_>,
        map: &ColumnMap,
        import_id: i64,
    ) -> ServiceResult<(Self::Shared, Self::Context)>;
    /// Checks rows against the database; returns the rows to write and the rejected ones.
    fn check(
        &self,
        conn: &mut Conn<'_>,
        context: &mut Self::Context,
        rows: Vec<Staged<Self::Row>>,
    ) -> ServiceResult<Checked<Self::Row>>;
    fn write(
        &self,
        conn: &mut Conn<'_>,
        context: &mut Self::Context,
        rows: Vec<Staged<Self::Row>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()>;
    /// Whether this import is a bulk load (secondary indexes dropped, rebuilt at the end).
    fn bulk(_context: &Self::Context) -> bool {
        false
    }
    /// Runs after the last batch of an import that will commit (not for dry runs or
    /// rejected files, whose transaction is rolled back).
    fn finish(&self, _conn: &mut Conn<'_>, _context: Self::Context) -> ServiceResult<()> {
        Ok(())
    }
}

enum Message<R> {
    Start { header: Vec<String>, encoding: TextEncoding, map: ColumnMap },
    Batch(Vec<(u64, Option<Fields>, Result<R, FieldErrors>)>),
    Fatal(ServiceError),
    Done,
}

/// Why an import's transaction ends without committing.
enum Stop {
    DryRun(Box<ImportReport>, Option<String>),
    Rejected(Box<ImportReport>),
    Failed(ServiceError, Box<ImportReport>),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        Stop::Failed(error.into(), Box::new(empty_report("", "")))
    }
}

fn empty_report(kind: &str, file_name: &str) -> ImportReport {
    ImportReport {
        import_id: None,
        kind: kind.to_owned(),
        file_name: file_name.to_owned(),
        status: "failed".into(),
        dry_run: false,
        skip_invalid: false,
        encoding: TextEncoding::Auto.as_str().to_owned(),
        bulk_load: false,
        rows_total: 0,
        rows_inserted: 0,
        rows_updated: 0,
        rows_skipped: 0,
        rows_rejected: 0,
        errors: Vec::new(),
        errors_total: 0,
        elapsed_ms: 0,
        reject_file: None,
    }
}

fn describe(errors: &FieldErrors) -> String {
    errors.0.iter().map(|error| format!("{}: {}", error.field, error.message)).collect::<Vec<_>>().join("; ")
}

impl Services {
    /// Runs one import as `identity` (the caller has checked the permission for `K`).
    pub(crate) async fn run_import<K: ImportKind>(
        &self,
        identity: &Identity,
        kind: Arc<K>,
        options: ImportOptions,
        source: ImportSource,
        progress: Arc<ImportProgress>,
        rejects: RejectSink,
    ) -> ServiceResult<ImportReport> {
        let started = Instant::now();
        let started_at_ms = self.now_ms();
        let import_settings = self.settings().import.clone();
        progress.bytes_total.store(source.size(), Ordering::Relaxed);
        let (sender, receiver) = crossbeam_channel::bounded::<Message<K::Row>>(4);
        let (shared_sender, shared_receiver) = crossbeam_channel::bounded::<Arc<K::Shared>>(1);

        let reader_kind = kind.clone();
        let reader_progress = progress.clone();
        let reader_options = options.clone();
        let reader = std::thread::Builder::new()
            .name("import-reader".into())
            .spawn(move || {
                let send = |message| sender.send(message).is_ok();
                let mut rows = match RowReader::open(
                    source,
                    &reader_options.file_name,
                    reader_options.format,
                    reader_options.encoding,
                    reader_progress.clone(),
                ) {
                    Ok(rows) => rows,
                    Err(error) => return send(Message::Fatal(error)),
                };
                let map = match ColumnMap::new(K::columns(), &rows.header)
                    .and_then(|map| K::check_columns(&map).map(|()| map))
                {
                    Ok(map) => map,
                    Err(error) => return send(Message::Fatal(error)),
                };
                if !send(Message::Start {
                    header: rows.header.clone(),
                    encoding: rows.encoding,
                    map: map.clone(),
                }) {
                    return false;
                }
                // The writer answers once the import's transaction has begun; if it gives up
                // first, the channel closes and so does this thread.
                let Ok(shared) = shared_receiver.recv() else { return false };
                let mut state = K::ReadState::default();
                let mut batch = Vec::with_capacity(import_settings.batch_rows);
                let mut count = 0_u64;
                while let Some(next) = rows.next_row() {
                    let (line, fields) = match next {
                        Ok(row) => row,
                        Err(error) => return send(Message::Fatal(error)),
                    };
                    count += 1;
                    if count > import_settings.rows_max {
                        return send(Message::Fatal(ServiceError::TooLarge {
                            what: "the number of rows",
                            limit: import_settings.rows_max,
                        }));
                    }
                    reader_progress.rows_read.fetch_add(1, Ordering::Relaxed);
                    let prepared = reader_kind.prepare(&mut state, &shared, &map, line, &fields);
                    // A row the writer cannot reject needs no fields there.
                    let keep = K::CHECK_MAY_REJECT || prepared.is_err();
                    batch.push((line, keep.then_some(fields), prepared));
                    if batch.len() >= import_settings.batch_rows
                        && !send(Message::Batch(std::mem::take(&mut batch)))
                    {
                        return false;
                    }
                }
                if !batch.is_empty() && !send(Message::Batch(batch)) {
                    return false;
                }
                send(Message::Done)
            })
            .map_err(|error| ServiceError::Config(format!("cannot start the import reader: {error}")))?;

        let identity_for_writer = identity.clone();
        let writer_progress = progress.clone();
        let writer_options = options.clone();
        let errors_max = self.settings().import.errors_reported_max;
        let services = self.clone();
        let outcome = self
            .database()
            .write_bulk(K::FOREIGN_KEYS, move |conn| -> Result<ImportReport, Stop> {
                let options = writer_options;
                let mut report = empty_report(K::NAME, &options.file_name);
                report.dry_run = options.dry_run;
                report.skip_invalid = options.skip_invalid;
                let fail = |error: ServiceError, report: &ImportReport| {
                    Stop::Failed(error, Box::new(report.clone()))
                };
                let (header, map) = match receiver.recv() {
                    Ok(Message::Start { header, encoding, map }) => {
                        report.encoding = encoding.as_str().to_owned();
                        (header, map)
                    }
                    Ok(Message::Fatal(error)) => return Err(fail(error, &report)),
                    _ => {
                        return Err(fail(
                            ServiceError::Config("the import reader stopped unexpectedly".into()),
                            &report,
                        ));
                    }
                };
                let record = repo::ImportRecord {
                    id: 0,
                    kind: K::NAME.to_owned(),
                    file_name: options.file_name.clone(),
                    status: "running".into(),
                    dry_run: options.dry_run,
                    skip_invalid: options.skip_invalid,
                    rows_total: 0,
                    rows_inserted: 0,
                    rows_updated: 0,
                    rows_rejected: 0,
                    report_json: "{}".into(),
                    rejects_csv: None,
                    started_by: identity_for_writer.name.clone(),
                    started_at_ms,
                    finished_at_ms: None,
                };
                let import_id = repo::insert(conn, &record)?;
                let record = repo::ImportRecord { id: import_id, ..record };
                report.import_id = Some(import_id);
                let (shared, mut context) =
                    kind.begin(conn, &map, import_id).map_err(|error| fail(error, &report))?;
                report.bulk_load = K::bulk(&context);
                if shared_sender.send(Arc::new(shared)).is_err() {
                    return Err(fail(
                        ServiceError::Config("the import reader stopped unexpectedly".into()),
                        &report,
                    ));
                }
                let mut rejects = rejects;
                let mut reject = |report: &mut ImportReport,
                                  line: u64,
                                  fields: Option<&Fields>,
                                  errors: FieldErrors|
                 -> Result<(), Stop> {
                    report.rows_rejected += 1;
                    report.errors_total += errors.0.len() as u64;
                    for error in &errors.0 {
                        if report.errors.len() < errors_max {
                            report.errors.push(RowError {
                                line,
                                field: error.field.clone(),
                                code: error.code.to_owned(),
                                message: error.message.clone(),
                            });
                        }
                    }
                    if options.skip_invalid {
                        debug_assert!(fields.is_some(), "a rejected row came without its fields");
                        let empty = Fields::new();
                        rejects
                            .write(&header, line, &describe(&errors), fields.unwrap_or(&empty))
                            .map_err(|error| Stop::Failed(error, Box::new(report.clone())))?;
                    }
                    Ok(())
                };
                loop {
                    let batch = match receiver.recv() {
                        Ok(Message::Batch(batch)) => batch,
                        Ok(Message::Done) => break,
                        Ok(Message::Fatal(error)) => return Err(fail(error, &report)),
                        Ok(Message::Start { .. }) | Err(_) => {
                            return Err(fail(
                                ServiceError::Config("the import reader stopped unexpectedly".into()),
                                &report,
                            ));
                        }
                    };
                    report.rows_total += batch.len() as u64;
                    let mut valid = Vec::with_capacity(batch.len());
                    for (line, fields, prepared) in batch {
                        match prepared {
                            Ok(row) => valid.push(Staged { line, fields, row }),
                            Err(errors) => reject(&mut report, line, fields.as_ref(), errors)?,
                        }
                    }
                    let (valid, invalid) =
                        kind.check(conn, &mut context, valid).map_err(|error| fail(error, &report))?;
                    for (staged, errors) in invalid {
                        reject(&mut report, staged.line, staged.fields.as_ref(), errors)?;
                    }
                    // Once a row is bad in all-or-nothing mode nothing will be kept, so stop
                    // writing but keep checking to report every problem.
                    if report.rows_rejected == 0 || options.skip_invalid {
                        let mut batch_outcome = BatchOutcome::default();
                        kind.write(conn, &mut context, valid, &mut batch_outcome)
                            .map_err(|error| fail(error, &report))?;
                        report.rows_inserted += batch_outcome.inserted;
                        report.rows_updated += batch_outcome.updated;
                        report.rows_skipped += batch_outcome.skipped;
                        writer_progress.rows_written.fetch_add(
                            batch_outcome.inserted + batch_outcome.updated + batch_outcome.skipped,
                            Ordering::Relaxed,
                        );
                    }
                }
                let (reject_file, rejects_csv) = rejects.finish().map_err(|error| fail(error, &report))?;
                report.reject_file = reject_file;
                report.elapsed_ms = started.elapsed().as_millis() as u64;
                if report.rows_rejected > 0 && !options.skip_invalid {
                    report.status = "rejected".into();
                    report.rows_inserted = 0;
                    report.rows_updated = 0;
                    report.rows_skipped = 0;
                    return Err(Stop::Rejected(Box::new(report)));
                }
                if options.dry_run {
                    report.status = "dry_run".into();
                    return Err(Stop::DryRun(Box::new(report), rejects_csv));
                }
                writer_progress.enter(ImportPhase::Finishing);
                tracing::debug!(
                    import_id,
                    rows = report.rows_total,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "rows written; finishing"
                );
                kind.finish(conn, context).map_err(|error| fail(error, &report))?;
                tracing::debug!(
                    import_id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "finished; committing"
                );
                report.status = "committed".into();
                let finished = services.finished_record(record, &report, rejects_csv, services.now_ms());
                if repo::finish(conn, &finished)? != 1 {
                    return Err(fail(
                        ServiceError::Store(StoreError::Invariant(format!(
                            "import {import_id} vanished while running"
                        ))),
                        &report,
                    ));
                }
                audit_repo::append(
                    conn,
                    &audit::entry(
                        &identity_for_writer,
                        finished.finished_at_ms.unwrap_or(started_at_ms),
                        &format!("import.{}", K::NAME),
                        "import",
                        Some(import_id.to_string()),
                        None,
                        Some(summary(&report)),
                    ),
                )?;
                writer_progress.enter(ImportPhase::Committing);
                Ok(report)
            })
            .await;
        let _ = reader.join();
        match outcome {
            Ok(mut report) => {
                // Until the commit is durable, not just until the last row went in.
                report.elapsed_ms = started.elapsed().as_millis() as u64;
                Ok(report)
            }
            Err(Stop::DryRun(report, rejects_csv)) => {
                let report = self.record_unsuccessful(identity, *report, rejects_csv, started_at_ms).await?;
                Ok(report)
            }
            Err(Stop::Rejected(report)) => {
                let errors_total = report.errors_total;
                let report = self.record_unsuccessful(identity, *report, None, started_at_ms).await?;
                Err(ServiceError::ImportRejected { errors_total, report: Box::new(report) })
            }
            Err(Stop::Failed(error, report)) => {
                if report.kind.is_empty() {
                    return Err(error);
                }
                let mut report = *report;
                report.status = "failed".into();
                report.errors_total += 1;
                report.errors.push(RowError {
                    line: match &error {
                        ServiceError::BadFile { line, .. } => line.unwrap_or(0),
                        _ => 0,
                    },
                    field: String::new(),
                    code: "import.failed".into(),
                    message: error.to_string(),
                });
                let _ = self.record_unsuccessful(identity, report, None, started_at_ms).await;
                Err(error)
            }
        }
    }

    fn finished_record(
        &self,
        mut record: repo::ImportRecord,
        report: &ImportReport,
        rejects_csv: Option<String>,
        now_ms: i64,
    ) -> repo::ImportRecord {
        record.status = report.status.clone();
        record.rows_total = report.rows_total as i64;
        record.rows_inserted = report.rows_inserted as i64;
        record.rows_updated = report.rows_updated as i64;
        record.rows_rejected = report.rows_rejected as i64;
        record.report_json = serde_json::to_string(report).unwrap_or_else(|_| "{}".into());
        record.rejects_csv = rejects_csv;
        record.finished_at_ms = Some(now_ms);
        record
    }

    /// Records an import that did not commit, after its transaction was rolled back.
    async fn record_unsuccessful(
        &self,
        identity: &Identity,
        mut report: ImportReport,
        rejects_csv: Option<String>,
        started_at_ms: i64,
    ) -> ServiceResult<ImportReport> {
        let now_ms = self.now_ms();
        let identity = identity.clone();
        let base = repo::ImportRecord {
            id: 0,
            kind: report.kind.clone(),
            file_name: report.file_name.clone(),
            status: report.status.clone(),
            dry_run: report.dry_run,
            skip_invalid: report.skip_invalid,
            rows_total: 0,
            rows_inserted: 0,
            rows_updated: 0,
            rows_rejected: 0,
            report_json: "{}".into(),
            rejects_csv: None,
            started_by: identity.name.clone(),
            started_at_ms,
            finished_at_ms: None,
        };
        let services = self.clone();
        let stored_report = report.clone();
        let id = self
            .database()
            .write(move |conn| {
                let mut record =
                    services.finished_record(base.clone(), &stored_report, rejects_csv.clone(), now_ms);
                record.id = repo::insert(conn, &record)?;
                let mut with_id = stored_report.clone();
                with_id.import_id = Some(record.id);
                record.report_json = serde_json::to_string(&with_id).unwrap_or_else(|_| "{}".into());
                repo::finish(conn, &record)?;
                audit_repo::append(
                    conn,
                    &audit::entry(
                        &identity,
                        now_ms,
                        &format!("import.{}", with_id.kind),
                        "import",
                        Some(record.id.to_string()),
                        None,
                        Some(summary(&with_id)),
                    ),
                )?;
                Ok::<_, ServiceError>(record.id)
            })
            .await?;
        report.import_id = Some(id);
        Ok(report)
    }

    /// Past imports, newest first.
    pub async fn list_imports(
        &self,
        identity: &Identity,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<ImportView>> {
        require_any_import(identity)?;
        let before = cursor.as_deref().map(cursor_decode_id).transpose()?;
        let limit = page_limit(limit);
        let records = self.database().read(move |conn| repo::list(conn, before, limit + 1)).await?;
        Ok(Page::from_overfetch(records, limit, |record| cursor_encode_id(record.id)).map(ImportView::from))
    }

    pub async fn get_import(&self, identity: &Identity, id: i64) -> ServiceResult<ImportView> {
        require_any_import(identity)?;
        let record = self.database().read(move |conn| repo::get(conn, id)).await?;
        record.map(ImportView::from).ok_or_else(|| ServiceError::not_found("import", id))
    }

    /// The rejected rows of an import as CSV, when rows were skipped through the API.
    pub async fn import_rejects(&self, identity: &Identity, id: i64) -> ServiceResult<String> {
        require_any_import(identity)?;
        let record = self
            .database()
            .read(move |conn| repo::get(conn, id))
            .await?
            .ok_or_else(|| ServiceError::not_found("import", id))?;
        record.rejects_csv.ok_or_else(|| ServiceError::not_found("rejected rows of import", id))
    }
}

/// Imports run for the whole business: an account limited to one store may not start one.
fn whole_business(identity: &Identity) -> ServiceResult<()> {
    match identity.scope.store_id() {
        Some(_) => Err(ServiceError::forbidden(
            "imports run for the whole business; ask an account without a store limit",
        )),
        None => Ok(()),
    }
}

/// Who an imported row belongs to, until the writer resolves it: a customer id, or the
/// blind index of a phone number.
#[derive(Debug, Clone)]
pub(crate) enum Holder {
    Id(i64),
    PhoneIndex(Vec<u8>),
}

impl Holder {
    /// From a row's `customer_id` cell, or else its `phone` cell (one of them is required).
    pub(crate) fn parse(
        services: &Services,
        errors: &mut FieldErrors,
        customer_id: Option<String>,
        phone: Option<String>,
    ) -> Option<Self> {
        match (customer_id, phone) {
            (Some(raw), _) => match raw.parse::<i64>() {
                Ok(id) if id > 0 => Some(Self::Id(id)),
                _ => {
                    push(
                        errors,
                        "customer_id",
                        "customer_id.invalid",
                        format!("`{raw}` is not a customer id"),
                    );
                    None
                }
            },
            (None, Some(raw)) => {
                errors.take("phone", cardcrm_domain::phone::Phone::parse(&raw)).map(|phone| {
                    Self::PhoneIndex(services.vault().blind_index("phone", phone.as_str()).to_vec())
                })
            }
            (None, None) => {
                push(errors, "customer_id", "required", "customer_id or phone is required".into());
                None
            }
        }
    }

    /// The customer the row names now: a merged customer's survivor; for a phone shared by
    /// several, the oldest. None when nobody matches.
    pub(crate) fn resolve(&self, conn: &mut Conn<'_>) -> ServiceResult<Option<i64>> {
        use cardcrm_store::repo::customers::{self as customer_repo, IndexedField};
        Ok(match self {
            Self::Id(id) => {
                customer_repo::get(conn, *id)?.map(|customer| customer.merged_into_id.unwrap_or(customer.id))
            }
            Self::PhoneIndex(index) => {
                customer_repo::ids_by_index(conn, IndexedField::Phone, index)?.into_iter().min()
            }
        })
    }

    /// The column the row named its customer by.
    pub(crate) fn field(&self) -> &'static str {
        match self {
            Self::Id(_) => "customer_id",
            Self::PhoneIndex(_) => "phone",
        }
    }
}

fn require_any_import(identity: &Identity) -> ServiceResult<()> {
    use cardcrm_domain::access::Permission;
    if identity.has(Permission::CustomerImport) || identity.has(Permission::TransactionImport) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            permission: Some(Permission::CustomerImport),
            message: format!("{} may not see imports", identity.name),
        })
    }
}

fn summary(report: &ImportReport) -> serde_json::Value {
    serde_json::json!({
        "file_name": report.file_name,
        "status": report.status,
        "rows_total": report.rows_total,
        "rows_inserted": report.rows_inserted,
        "rows_updated": report.rows_updated,
        "rows_skipped": report.rows_skipped,
        "rows_rejected": report.rows_rejected,
    })
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportView {
    pub id: i64,
    pub kind: String,
    pub file_name: String,
    pub status: String,
    pub dry_run: bool,
    pub skip_invalid: bool,
    pub rows_total: i64,
    pub rows_inserted: i64,
    pub rows_updated: i64,
    pub rows_rejected: i64,
    pub has_rejects: bool,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub report: serde_json::Value,
}

impl From<repo::ImportRecord> for ImportView {
    fn from(record: repo::ImportRecord) -> Self {
        Self {
            id: record.id,
            kind: record.kind,
            file_name: record.file_name,
            status: record.status,
            dry_run: record.dry_run,
            skip_invalid: record.skip_invalid,
            rows_total: record.rows_total,
            rows_inserted: record.rows_inserted,
            rows_updated: record.rows_updated,
            rows_rejected: record.rows_rejected,
            has_rejects: record.rejects_csv.is_some(),
            started_by: record.started_by,
            started_at: format_ms(record.started_at_ms),
            finished_at: record.finished_at_ms.map(format_ms),
            report: serde_json::from_str(&record.report_json).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Whether loading about `rows_expected` rows into a table holding about `rows_stored` is a
/// bulk load, worth dropping secondary indexes for and building them again, sorted, at the
/// end: the file is big (`bulk_rows_min`) and not small next to the table, whose indexes
/// are rebuilt whole.
pub(crate) fn is_bulk(rows_expected: u64, rows_stored: u64, bulk_rows_min: u64) -> bool {
    rows_expected >= bulk_rows_min.max(1) && rows_expected.saturating_mul(4) >= rows_stored
}

/// Adds `error` for `field` to `errors`.
pub(crate) fn push(errors: &mut FieldErrors, field: &str, code: &'static str, message: String) {
    errors.push(FieldError::new(field, code, message));
}
