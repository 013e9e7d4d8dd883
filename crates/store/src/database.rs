//! The `Database` handle: worker threads that own the connections, and the async entry
//! points `read` and `write` that send units of work to them.
//!
//! Writes are group-committed: a writer takes the first waiting unit of work, gathers the
//! others already queued (up to `write_batch_max`, waiting at most `write_linger`), runs each
//! under its own SAVEPOINT inside one transaction, commits once, and only then answers every
//! caller. A unit that fails is rolled back to its savepoint without touching the others.
//! SQLite gets one writer thread (it has one writer anyway) and several reader threads;
//! PostgreSQL gets a pool of connection threads that each serve reads and group writes.

use std::{
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use std::sync::atomic::AtomicU64;

use crossbeam_channel::{Receiver, Sender, select};
use tokio::sync::oneshot;

use crate::{
    conn::{Backend, Conn, PgClient},
    error::{StoreError, StoreResult},
    migrate,
};

/// Tuning of the worker pool. Defaults suit a small shop's machine.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// SQLite reader connections (each on its own thread).
    pub sqlite_readers: usize,
    /// PostgreSQL connections (each on its own thread).
    pub postgres_connections: usize,
    /// Most units of work committed together on SQLite.
    pub write_batch_max: usize,
    /// Most units of work committed together on PostgreSQL, per connection. Units batched
    /// there keep each other's row locks until the batch commits, which makes unrelated
    /// requests wait and deadlock across connections; PostgreSQL flushes concurrent commits
    /// together by itself.
    pub postgres_write_batch_max: usize,
    /// How long a writer waits for more units before committing a batch that is not full.
    /// Zero commits at once with whatever queued while the previous commit was syncing.
    pub write_linger: Duration,
    /// SQLite page cache per reader connection (and for a bulk unit of work), in KiB.
    pub sqlite_cache_kib: i64,
    /// SQLite page cache of the writer connection, in KiB. Small on purpose: at every commit
    /// SQLite walks the writer's whole page-cache hash table (a B-tree split leaves a page
    /// keyed past the end of the file, so the end-of-transaction truncate scans every slot),
    /// which with 64 MiB cost a tenth of the writer's time. The writer reads unchanged pages
    /// through the memory map instead, as readers do.
    pub sqlite_writer_cache_kib: i64,
    /// How often the checkpointer folds the WAL back into the database file. Each checkpoint
    /// ends with an fsync of the database file, which holds up the commits' fsyncs of the WAL
    /// on the same disk: measured on the checkout benchmark, one a second gave a p99 of
    /// 4.3–4.6 ms at 2,250 checkouts/s where four a second gave 7.2 ms (and 4.0–6.6 against
    /// 5.4–7.3 ms at 350/s).
    pub sqlite_checkpoint_interval: Duration,
    /// How much of the SQLite file readers map into memory, in bytes (0: read with system
    /// calls). Mapped reads skip a copy and a system call per page.
    pub sqlite_mmap_bytes: i64,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            sqlite_readers: 4,
            postgres_connections: 8,
            write_batch_max: 256,
            postgres_write_batch_max: 1,
            write_linger: Duration::ZERO,
            sqlite_cache_kib: 65_536,
            sqlite_writer_cache_kib: 8_192,
            sqlite_checkpoint_interval: Duration::from_millis(1_000),
            sqlite_mmap_bytes: 1 << 30,
        }
    }
}

/// Where the data lives, parsed from a URL or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://…` / `postgresql://…` for PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a
    /// bare path for SQLite.
    pub fn parse(url: &str) -> StoreResult<Self> {
        let trimmed = url.trim();
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            return Ok(Self::Postgres(trimmed.to_owned()));
        }
        let path =
            trimmed.strip_prefix("sqlite://").or_else(|| trimmed.strip_prefix("sqlite:")).unwrap_or(trimmed);
        if path.is_empty() || path.contains("://") {
            return Err(StoreError::BadUrl(redact_url(url)));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// A URL with any password replaced by `***`, safe to print and log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

type ReadJob = Box<dyn FnOnce(&mut Conn<'_>) + Send>;

/// Whether the database checks foreign keys during a bulk unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignKeys {
    /// Every row is checked as it is written.
    Enforced,
    /// SQLite skips the per-row check (a random read of the parent table per row, which
    /// halved bulk load rates); the work resolves its references inside the transaction and
    /// checks them itself before it returns. PostgreSQL enforces them regardless.
    CheckedByCaller,
}

/// A unit of work waiting for a writer.
trait WriteJob: Send {
    /// Runs inside the open transaction, under a savepoint. Returns whether it succeeded.
    fn run(&mut self, conn: &mut Conn<'_>) -> bool;
    /// Whether the job may run again after a retryable failure.
    fn can_retry(&self) -> bool;
    /// A bulk job runs alone in its own transaction; `Some` says how foreign keys are kept.
    fn bulk(&self) -> Option<ForeignKeys>;
    /// Called once the transaction is committed (`Ok`) or abandoned (`Err`).
    fn finish(self: Box<Self>, commit: StoreResult<()>);
}

struct Job<F, T, E> {
    work: F,
    result: Option<Result<T, E>>,
    retry: bool,
    bulk: Option<ForeignKeys>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> WriteJob for Job<F, T, E>
where
    F: FnMut(&mut Conn<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, conn: &mut Conn<'_>) -> bool {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (self.work)(conn)));
        let result = outcome.unwrap_or_else(|_| {
            Err(E::from(StoreError::Invariant("a unit of work panicked; it was rolled back".into())))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn can_retry(&self) -> bool {
        self.retry
    }

    fn bulk(&self) -> Option<ForeignKeys> {
        self.bulk
    }

    fn finish(self: Box<Self>, commit: StoreResult<()>) {
        let reply = match (self.result, commit) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(error)) => Err(E::from(error)),
            (None, Err(error)) => Err(E::from(error)),
            (None, Ok(())) => Err(E::from(StoreError::Invariant("a unit of work never ran".into()))),
        };
        // The caller may have gone away (request cancelled); the work is committed anyway.
        let _ = self.reply.send(reply);
    }
}

struct Shared {
    backend: Backend,
    /// SQLite statements prepared again (see [`Database::sqlite_reprepares`]).
    reprepares: Arc<AtomicU64>,
    read_sender: Option<Sender<ReadJob>>,
    write_sender: Option<Sender<Box<dyn WriteJob>>>,
    /// Dropped to stop the SQLite checkpointer.
    checkpoint_stop: Option<Sender<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.read_sender.take();
        self.write_sender.take();
        self.checkpoint_stop.take();
        // The last handle may go with a unit of work that held one, on a worker itself: that
        // worker ends on its own once the channels are closed; joining it would deadlock.
        let current = std::thread::current().id();
        for worker in self.workers.drain(..) {
            if worker.thread().id() != current {
                let _ = worker.join();
            }
        }
    }
}

/// A handle on the database; cheap to clone. Dropping the last clone stops the workers
/// after they finish what they hold.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("backend", &self.shared.backend).finish()
    }
}

impl Database {
    /// Opens (creating when needed) the database at `location`, applies pending
    /// migrations, and starts the workers. Blocking; runs its work on plain threads so it
    /// may be called from inside an async runtime.
    pub fn open(location: &Location, options: &DatabaseOptions) -> StoreResult<Self> {
        let location = location.clone();
        let options = options.clone();
        std::thread::spawn(move || match &location {
            Location::Sqlite(path) => open_sqlite(path, &options),
            Location::Postgres(url) => open_postgres(url, &options),
        })
        .join()
        .map_err(|_| StoreError::Invariant("opening the database panicked".into()))?
    }

    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// How many times SQLite had to prepare a cached statement again: its plan depended on
    /// a bound value, or the schema changed. Steady work adds nothing; always 0 on PostgreSQL.
    pub fn sqlite_reprepares(&self) -> u64 {
        self.shared.reprepares.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn send_read(&self, job: ReadJob) -> StoreResult<()> {
        let sender = self.shared.read_sender.as_ref().ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)
    }

    fn send_write(&self, job: Box<dyn WriteJob>) -> StoreResult<()> {
        let sender = self.shared.write_sender.as_ref().ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)
    }

    /// Runs read-only work on a reader. On SQLite it sees one snapshot; on PostgreSQL each
    /// statement sees the latest committed data (use [`Database::read_consistent`] for a
    /// snapshot across statements).
    pub async fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.read_with(false, work).await
    }

    /// Runs read-only work that sees one consistent snapshot on either backend.
    pub async fn read_consistent<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.read_with(true, work).await
    }

    async fn read_with<T, E, F>(&self, consistent: bool, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send_read(Box::new(move |conn: &mut Conn<'_>| {
            let _ = reply.send(run_read(conn, consistent, work));
        }))?;
        answer.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs work in a write transaction, group-committed with other writes. The work may
    /// run more than once if the database reports a conflict, so it must not have side
    /// effects outside the transaction. The answer comes only after the commit is durable.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnMut(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send_write(Box::new(Job { work, result: None, retry: true, bulk: None, reply }))?;
        answer.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs work that can run only once (it consumes a stream, such as an import file) in a
    /// transaction of its own: writes queued meanwhile wait and commit after it. With
    /// [`ForeignKeys::CheckedByCaller`] SQLite does not check foreign keys row by row.
    pub async fn write_bulk<T, E, F>(&self, foreign_keys: ForeignKeys, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let mut work = Some(work);
        let once = move |conn: &mut Conn<'_>| match work.take() {
            Some(work) => work(conn),
            None => Err(E::from(StoreError::Invariant("a run-once unit of work ran twice".into()))),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job { work: once, result: None, retry: false, bulk: Some(foreign_keys), reply };
        self.send_write(Box::new(job))?;
        answer.await.map_err(|_| E::from(StoreError::Closed))?
    }
}

fn run_read<T, E, F>(conn: &mut Conn<'_>, consistent: bool, work: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn<'_>) -> Result<T, E>,
    E: From<StoreError>,
{
    let begin = match (conn.backend(), consistent) {
        (Backend::Sqlite, _) => Some("BEGIN"),
        (Backend::Postgres, true) => Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        (Backend::Postgres, false) => None,
    };
    if let Some(begin) = begin {
        conn.control(begin)?;
    }
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(E::from(StoreError::Invariant("a read panicked".into()))));
    if begin.is_some() {
        // A read-only transaction: ending it cannot lose anything, so ROLLBACK is as good
        // as COMMIT and also works after an error.
        conn.control("ROLLBACK")?;
    }
    result
}

const RETRIES_MAX: usize = 3;

/// Runs a bulk unit of work as its own transaction: no savepoint, so SQLite keeps no
/// statement journal of the pages it changes (that would grow with the load).
fn run_alone(conn: &mut Conn<'_>, begin: &str, mut job: Box<dyn WriteJob>) {
    if let Err(error) = conn.control(begin) {
        job.finish(Err(StoreError::Invariant(format!("could not begin a transaction: {error}"))));
        return;
    }
    let commit = if job.run(conn) {
        conn.control("COMMIT").inspect_err(|_| {
            let _ = conn.batch("ROLLBACK");
        })
    } else {
        // The job's own error is its answer; the rollback only has to happen.
        if let Err(error) = conn.batch("ROLLBACK") {
            tracing::error!(%error, "rolling back a failed bulk unit failed");
        }
        Ok(())
    };
    job.finish(commit);
}

/// Runs one unit of work as its own transaction, without a savepoint (two round trips fewer
/// on PostgreSQL), again after a retryable failure.
fn run_single(conn: &mut Conn<'_>, begin: &str, mut job: Box<dyn WriteJob>) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Err(error) = conn.control(begin) {
            job.finish(Err(StoreError::Invariant(format!("could not begin a transaction: {error}"))));
            return;
        }
        if job.run(conn) {
            let commit = conn.control("COMMIT").inspect_err(|_| {
                let _ = conn.batch("ROLLBACK");
            });
            job.finish(commit);
            return;
        }
        let retryable = conn.take_retryable_failure();
        if let Err(error) = conn.batch("ROLLBACK") {
            tracing::error!(%error, "rolling back a failed unit failed");
        }
        if !(retryable && job.can_retry() && attempts < RETRIES_MAX) {
            // The unit's own error is its answer.
            job.finish(Ok(()));
            return;
        }
    }
}

/// Runs a batch of units of work in one transaction and answers them after the commit.
fn run_batch(conn: &mut Conn<'_>, begin: &str, jobs: Vec<Box<dyn WriteJob>>) {
    if let Err(error) = conn.control(begin) {
        let message = error.to_string();
        for job in jobs {
            job.finish(Err(StoreError::Invariant(format!("could not begin a transaction: {message}"))));
        }
        return;
    }
    let mut jobs = jobs;
    let mut savepoint_error = None;
    for job in &mut jobs {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Err(error) = conn.control("SAVEPOINT unit") {
                savepoint_error = Some(error);
                break;
            }
            if job.run(conn) {
                if let Err(error) = conn.control("RELEASE SAVEPOINT unit") {
                    savepoint_error = Some(error);
                }
                break;
            }
            let retryable = conn.take_retryable_failure();
            if let Err(error) = conn
                .control("ROLLBACK TO SAVEPOINT unit")
                .and_then(|()| conn.control("RELEASE SAVEPOINT unit"))
            {
                savepoint_error = Some(error);
                break;
            }
            if !(retryable && job.can_retry() && attempts < RETRIES_MAX) {
                break;
            }
        }
        if savepoint_error.is_some() {
            break;
        }
    }
    let commit = match savepoint_error {
        Some(error) => Err(error),
        None => conn.control("COMMIT"),
    };
    let outcome = match commit {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = conn.batch("ROLLBACK");
            tracing::error!(%error, units = jobs.len(), "group commit failed; every unit in it is rolled back");
            Err(error)
        }
    };
    for job in jobs {
        let commit = match &outcome {
            Ok(()) => Ok(()),
            Err(error) => Err(StoreError::Invariant(format!("the transaction did not commit: {error}"))),
        };
        job.finish(commit);
    }
}

type QueuedJob = Box<dyn WriteJob>;

/// Takes the first job, then whatever else is waiting (bounded), lingering if asked. A bulk
/// job goes alone: met while gathering, it is held back for the next transaction.
fn gather(
    first: Box<dyn WriteJob>,
    receiver: &Receiver<Box<dyn WriteJob>>,
    options: &DatabaseOptions,
) -> (Vec<QueuedJob>, Option<QueuedJob>) {
    if first.bulk().is_some() {
        return (vec![first], None);
    }
    let mut batch = vec![first];
    let deadline = Instant::now() + options.write_linger;
    while batch.len() < options.write_batch_max.max(1) {
        let next = match receiver.try_recv() {
            Ok(job) => job,
            Err(_) => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match receiver.recv_timeout(deadline - now) {
                    Ok(job) => job,
                    Err(_) => break,
                }
            }
        };
        if next.bulk().is_some() {
            return (batch, Some(next));
        }
        batch.push(next);
    }
    (batch, None)
}

/// Runs `first` and everything gathered with it, then any bulk job held back, in turn.
/// Returns whether a bulk job ran.
fn write_from(
    first: Box<dyn WriteJob>,
    receiver: &Receiver<Box<dyn WriteJob>>,
    options: &DatabaseOptions,
    conn: &mut Conn<'_>,
) -> bool {
    let mut bulk_ran = false;
    let begin = match conn.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut next = Some(first);
    while let Some(first) = next.take() {
        let (batch, held) = gather(first, receiver, options);
        let unchecked = conn.backend() == Backend::Sqlite
            && batch.iter().any(|job| job.bulk() == Some(ForeignKeys::CheckedByCaller));
        if unchecked {
            // Only outside a transaction does SQLite take this switch.
            if let Err(error) = conn.batch("PRAGMA foreign_keys = OFF") {
                tracing::error!(%error, "could not switch foreign keys off for a bulk load");
            }
        }
        match <[QueuedJob; 1]>::try_from(batch) {
            Ok([job]) if job.bulk().is_some() => {
                if conn.backend() == Backend::Sqlite {
                    // Loads sort and build indexes: the sorter's memory follows the cache size.
                    let cache = format!("PRAGMA cache_size = -{}", options.sqlite_cache_kib.max(64));
                    if let Err(error) = conn.batch(&cache) {
                        tracing::warn!(%error, "could not enlarge the page cache for a bulk load");
                    }
                }
                bulk_ran = true;
                run_alone(conn, begin, job);
            }
            Ok([job]) => run_single(conn, begin, job),
            Err(batch) => run_batch(conn, begin, batch),
        }
        if unchecked && let Err(error) = conn.batch("PRAGMA foreign_keys = ON") {
            tracing::error!(%error, "could not switch foreign keys back on after a bulk load");
        }
        next = held;
    }
    bulk_ran
}

/// What a SQLite connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqliteRole {
    Reader,
    /// The one connection that writes (small page cache, reads through the memory map).
    Writer,
    /// The WAL checkpointer.
    Checkpointer,
}

fn sqlite_connection(
    path: &std::path::Path,
    options: &DatabaseOptions,
    role: SqliteRole,
) -> StoreResult<rusqlite::Connection> {
    let writer = role != SqliteRole::Reader;
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.set_prepared_statement_cache_capacity(256);
    // The query planner stability guarantee: a statement keeps its plan whatever values are
    // bound. Without it SQLite plans again whenever a value it looked at changes (a LIMIT,
    // an ORDER BY it could skip), so cached statements were parsed and planned anew on most
    // calls: a third of a lookup's time, measured. Our queries do not need value-driven plans.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    let cache_kib =
        if role == SqliteRole::Writer { options.sqlite_writer_cache_kib } else { options.sqlite_cache_kib };
    connection.execute_batch(&format!("PRAGMA cache_size = -{};", cache_kib.max(64)))?;
    // Temporary data (the sorter building an index, large sorts) spills to files once past
    // the cache size, so a bulk load's memory stays bounded.
    connection.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = FILE;")?;
    if writer {
        // WAL lets readers run beside the writer; FULL makes every commit durable
        // (money and points are written here).
        let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invariant(format!("SQLite refused WAL mode (got {mode})")));
        }
        connection.execute_batch("PRAGMA synchronous = FULL;")?;
        // A helper thread for the sorter: index builds after bulk loads use both cores.
        connection.execute_batch("PRAGMA threads = 2;")?;
    } else {
        connection.execute_batch("PRAGMA query_only = ON;")?;
    }
    if role != SqliteRole::Checkpointer {
        connection.execute_batch(&format!("PRAGMA mmap_size = {};", options.sqlite_mmap_bytes.max(0)))?;
    }
    if role == SqliteRole::Writer {
        // Checkpoints run on their own connection and thread, not inside the writer's
        // commits: an automatic checkpoint in the committing connection stalls every request
        // waiting on that commit (the checkout benchmark's p99). PASSIVE never waits.
        connection.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    Ok(connection)
}

fn open_sqlite(path: &std::path::Path, options: &DatabaseOptions) -> StoreResult<Database> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut writer = sqlite_connection(path, options, SqliteRole::Writer)?;
    let reprepares = Arc::new(AtomicU64::new(0));
    {
        let mut conn = Conn::sqlite(&writer, &reprepares);
        migrate::run(&mut conn)?;
    }
    let (read_sender, read_receiver) = crossbeam_channel::unbounded::<ReadJob>();
    let (write_sender, write_receiver) = crossbeam_channel::unbounded::<Box<dyn WriteJob>>();
    let mut workers = Vec::new();
    for index in 0..options.sqlite_readers.max(1) {
        let connection = sqlite_connection(path, options, SqliteRole::Reader)?;
        let receiver = read_receiver.clone();
        let counter = reprepares.clone();
        workers.push(std::thread::Builder::new().name(format!("sqlite-read-{index}")).spawn(move || {
            while let Ok(job) = receiver.recv() {
                job(&mut Conn::sqlite(&connection, &counter));
            }
        })?);
    }
    let checkpointer = sqlite_connection(path, options, SqliteRole::Checkpointer)?;
    let checkpoint_interval = options.sqlite_checkpoint_interval;
    let (checkpoint_stop, stop_receiver) = crossbeam_channel::bounded::<()>(0);
    workers.push(std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        // A checkpoint ends with an fsync of the database file, which holds up the commits'
        // fsyncs of the WAL on the same disk: at a light load a shorter interval (smaller
        // checkpoints) shortens the tail, at a heavy one it lengthens it (more of them).
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            stop_receiver.recv_timeout(checkpoint_interval)
        {
            if let Err(error) = checkpointer.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                tracing::warn!(%error, "checkpointing the WAL failed");
            }
        }
    })?);
    let writer_options = options.clone();
    let counter = reprepares.clone();
    let writer_path = path.to_owned();
    workers.push(std::thread::Builder::new().name("sqlite-write".into()).spawn(move || {
        while let Ok(first) = write_receiver.recv() {
            let bulk_ran =
                write_from(first, &write_receiver, &writer_options, &mut Conn::sqlite(&writer, &counter));
            if bulk_ran {
                // A bulk unit ran with a large page cache, and the cache's hash table never
                // shrinks: a fresh connection gives ordinary commits their small one back.
                match sqlite_connection(&writer_path, &writer_options, SqliteRole::Writer) {
                    Ok(fresh) => writer = fresh,
                    Err(error) => tracing::warn!(%error, "reopening the writer after a bulk load failed"),
                }
            }
        }
        // Leave a tidy file behind: fold the WAL back into the database.
        let _ = writer.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    })?);
    Ok(Database {
        shared: Arc::new(Shared {
            backend: Backend::Sqlite,
            reprepares,
            read_sender: Some(read_sender),
            write_sender: Some(write_sender),
            checkpoint_stop: Some(checkpoint_stop),
            workers,
        }),
    })
}

fn postgres_client(url: &str) -> StoreResult<PgClient> {
    let client = postgres::Client::connect(url, postgres::NoTls)?;
    Ok(PgClient::new(client))
}

fn open_postgres(url: &str, options: &DatabaseOptions) -> StoreResult<Database> {
    {
        let mut client = postgres_client(url)?;
        let mut conn = Conn::postgres(&mut client);
        migrate::run(&mut conn)?;
    }
    let (read_sender, read_receiver) = crossbeam_channel::unbounded::<ReadJob>();
    let (write_sender, write_receiver) = crossbeam_channel::unbounded::<Box<dyn WriteJob>>();
    let mut workers = Vec::new();
    let options =
        DatabaseOptions { write_batch_max: options.postgres_write_batch_max.max(1), ..options.clone() };
    for index in 0..options.postgres_connections.max(1) {
        let mut client = postgres_client(url)?;
        let reads = read_receiver.clone();
        let writes = write_receiver.clone();
        let url = url.to_owned();
        let worker_options = options.clone();
        workers.push(std::thread::Builder::new().name(format!("postgres-{index}")).spawn(move || {
            loop {
                select! {
                    recv(writes) -> job => {
                        let Ok(first) = job else { break };
                        reconnect_if_closed(&mut client, &url);
                        write_from(first, &writes, &worker_options, &mut Conn::postgres(&mut client));
                    }
                    recv(reads) -> job => {
                        let Ok(job) = job else { break };
                        reconnect_if_closed(&mut client, &url);
                        job(&mut Conn::postgres(&mut client));
                    }
                }
            }
        })?);
    }
    Ok(Database {
        shared: Arc::new(Shared {
            backend: Backend::Postgres,
            reprepares: Arc::new(AtomicU64::new(0)),
            read_sender: Some(read_sender),
            write_sender: Some(write_sender),
            checkpoint_stop: None,
            workers,
        }),
    })
}

fn reconnect_if_closed(client: &mut PgClient, url: &str) {
    if client.client.is_closed() {
        match postgres_client(url) {
            Ok(fresh) => *client = fresh,
            Err(error) => tracing::error!(%error, "reconnecting to PostgreSQL failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert_eq!(Location::parse("/tmp/a.db").unwrap(), Location::Sqlite("/tmp/a.db".into()));
        assert_eq!(Location::parse("sqlite:///tmp/a.db").unwrap(), Location::Sqlite("/tmp/a.db".into()));
        assert_eq!(Location::parse("sqlite:a.db").unwrap(), Location::Sqlite("a.db".into()));
        assert!(matches!(Location::parse("postgres://u@h/db").unwrap(), Location::Postgres(_)));
        assert!(Location::parse("mysql://x").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://user:secret@host:5432/db"), "postgres://user:***@host:5432/db");
        assert_eq!(redact_url("postgres://user@host/db"), "postgres://user@host/db");
        assert_eq!(redact_url("/var/lib/cardcrm.db"), "/var/lib/cardcrm.db");
    }
}
