//! The storage layer's own story, run on SQLite and (with TEST_DATABASE_URL) PostgreSQL:
//! group-committed writes, savepoint isolation of failed units, constraint mapping, bulk paths.

use cardcrm_store::{
    Backend, Database, DatabaseOptions, ForeignKeys, StoreError, params,
    repo::{loyalty, organisation, purchases},
    testing::TestDatabase,
};

fn store_record(code: &str) -> organisation::StoreRecord {
    organisation::StoreRecord {
        id: 0,
        code: code.into(),
        name: format!("门店 {code}"),
        city: Some("上海".into()),
        address: None,
        time_zone: "Asia/Shanghai".into(),
        status: "active".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

fn open() -> (TestDatabase, Database) {
    let test = TestDatabase::create().expect("create test database");
    let database = Database::open(test.location(), &DatabaseOptions::default()).expect("open");
    (test, database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_and_failed_units_roll_back_alone() {
    let (_test, database) = open();
    let mut handles = Vec::new();
    for index in 0..200 {
        let database = database.clone();
        handles.push(tokio::spawn(async move {
            database
                .write(move |conn| {
                    let record = store_record(&format!("S{index:03}"));
                    let id = organisation::insert(conn, &record)?;
                    if index % 10 == 0 {
                        // Written, then failed: must vanish while its batch neighbours stay.
                        return Err(StoreError::Invariant(format!("unit {index} fails on purpose")));
                    }
                    Ok(id)
                })
                .await
        }));
    }
    let mut committed = 0;
    let mut failed = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(_) => committed += 1,
            Err(StoreError::Invariant(_)) => failed += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!((committed, failed), (180, 20));
    let stores = database.read(organisation::list).await.unwrap();
    assert_eq!(stores.len(), 180);
    assert!(stores.iter().all(|store| !store.code.ends_with('0')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violations_are_recognised_on_both_backends() {
    let (_test, database) = open();
    database.write(|conn| organisation::insert(conn, &store_record("A"))).await.unwrap();
    let error = database.write(|conn| organisation::insert(conn, &store_record("A"))).await.unwrap_err();
    assert!(matches!(error, StoreError::UniqueViolation { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_insert_skips_rows_already_stored() {
    let (_test, database) = open();
    let inserted = database
        .write(|conn| {
            conn.execute(
                "INSERT INTO customers (id, gender, source_channel, preferences_json, status, version, created_at_ms, updated_at_ms) \
                 VALUES (1, 'unknown', 'store', '{}', 'active', 1, 0, 0)",
                params![],
            )?;
            let make = |external: &str| purchases::PurchaseRecord {
                id: 0,
                customer_id: 1,
                store_id: None,
                occurred_at_ms: 1_000,
                amount_minor: 1_250,
                currency: "CNY".into(),
                category: Some("咖啡".into()),
                channel: "store".into(),
                external_id: Some(external.into()),
                import_id: None,
                operation_id: None,
                created_at_ms: 0,
            };
            let first: Vec<_> = (0..150).map(|index| make(&format!("T{index}"))).collect();
            let first_count = purchases::insert_many(conn, &first)?;
            // 100 again plus 100 new: only the new ones go in.
            let second: Vec<_> = (50..250).map(|index| make(&format!("T{index}"))).collect();
            let second_count = purchases::insert_many(conn, &second)?;
            Ok::<_, StoreError>((first_count, second_count))
        })
        .await
        .unwrap();
    assert_eq!(inserted, (150, 100));
    assert_eq!(database.read(purchases::count).await.unwrap(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocated_ids_never_overlap_within_a_transaction() {
    let (_test, database) = open();
    let (first, second) = database
        .write(|conn| {
            Ok::<_, StoreError>((conn.allocate_ids("customers", 3)?, conn.allocate_ids("customers", 2)?))
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 2);
    assert!(first.iter().all(|id| !second.contains(id)), "{first:?} {second:?}");
}

/// Whether `name` is an index of the database, asked the backend's own way.
async fn index_exists(database: &Database, name: &'static str) -> bool {
    let sql = match database.backend() {
        Backend::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = $1",
        Backend::Postgres => "SELECT count(*) FROM pg_indexes WHERE indexname = $1",
    };
    database.read(move |conn| conn.query_one(sql, params![name], |row| row.get::<i64>(0))).await.unwrap() == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_index_is_rebuilt_before_commit_and_survives_a_rollback() {
    let (_test, database) = open();
    let name = purchases::CUSTOMER_INDEX;
    // A unit that defers the index and then fails: the rollback keeps the index.
    let failed = database
        .write_bulk(ForeignKeys::Enforced, move |conn| {
            let deferred = conn.defer_index(name)?;
            assert_eq!(deferred.is_some(), conn.backend() == Backend::Sqlite, "only SQLite defers");
            Err::<(), _>(StoreError::Invariant("stop here".into()))
        })
        .await;
    assert!(failed.is_err());
    assert!(index_exists(&database, name).await);
    // A unit that defers and restores it commits with the index in place.
    database
        .write_bulk(ForeignKeys::Enforced, move |conn| {
            if let Some(deferred) = conn.defer_index(name)? {
                conn.restore_index(deferred)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    assert!(index_exists(&database, name).await);
    // An index that enforces uniqueness is never dropped.
    let unique = database
        .write_bulk(ForeignKeys::Enforced, |conn| conn.defer_index("purchases_external_id").map(|_| ()))
        .await;
    if database.backend() == Backend::Sqlite {
        assert!(matches!(unique, Err(StoreError::Invariant(_))), "{unique:?}");
    }
    assert!(index_exists(&database, "purchases_external_id").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_are_enforced_again_after_a_bulk_unit_that_checked_its_own() {
    let (_test, database) = open();
    let orphan = |conn: &mut cardcrm_store::Conn<'_>| {
        conn.execute(
            "INSERT INTO customer_tags (customer_id, tag, created_at_ms) VALUES (424242, 'x', 0)",
            params![],
        )
    };
    // PostgreSQL checks even here; SQLite leaves it to the unit, which does not roll back.
    let bulk = database.write_bulk(ForeignKeys::CheckedByCaller, move |conn| orphan(conn)).await;
    assert_eq!(bulk.is_ok(), database.backend() == Backend::Sqlite, "{bulk:?}");
    database.write(|conn| conn.execute("DELETE FROM customer_tags", params![])).await.unwrap();
    // Every ordinary write after it is checked.
    let error = database.write(move |conn| orphan(conn)).await.unwrap_err();
    assert!(matches!(error, StoreError::ForeignKeyViolation { .. }), "{error}");
    let error = database.write_bulk(ForeignKeys::Enforced, move |conn| orphan(conn)).await.unwrap_err();
    assert!(matches!(error, StoreError::ForeignKeyViolation { .. }), "{error}");
}

/// A member row for the review test: ordinary, version 1.
fn member_record(customer_id: i64) -> loyalty::MemberRecord {
    loyalty::MemberRecord {
        customer_id,
        tier: "ordinary".into(),
        tier_since_ms: 1,
        review_at_ms: 1,
        grace_until_ms: None,
        override_tier: None,
        override_until_ms: None,
        override_by: None,
        override_reason: None,
        first_purchase_at_ms: None,
        referred_by: None,
        enrolled_at_ms: None,
        version: 1,
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_of_members_changed_meanwhile_are_left_out_whole() {
    let (_test, database) = open();
    // 100 members: more than the size at which PostgreSQL writes reviews from a staging table.
    let members = 100_i64;
    database
        .write(move |conn| {
            for id in 1..=members {
                conn.execute(
                    "INSERT INTO customers (id, gender, source_channel, preferences_json, status, version, created_at_ms, \
                     updated_at_ms) VALUES ($1, 'unknown', 'import', '{}', 'active', 1, 1, 1)",
                    params![id],
                )?;
                loyalty::insert_member(conn, &member_record(id))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    // Every member is upgraded to silver; every tenth was read at a version it no longer has.
    let reviews: Vec<loyalty::MemberReview> = (1..=members)
        .map(|id| {
            let mut member = member_record(id);
            member.tier = "silver".into();
            member.review_at_ms = 2;
            member.version = 2;
            member.updated_at_ms = 2;
            loyalty::MemberReview {
                member,
                expected_version: if id % 10 == 0 { 7 } else { 1 },
                dates_only: false,
                tier_changed: true,
                history: Some(loyalty::TierChangeRecord {
                    id: 0,
                    customer_id: id,
                    from_tier: Some("ordinary".into()),
                    to_tier: "silver".into(),
                    reason: "upgrade".into(),
                    detail_json: "{}".into(),
                    actor: "test".into(),
                    created_at_ms: 2,
                }),
                card_tier: Some("silver".into()),
                event: Some(loyalty::EventRecord {
                    id: 0,
                    kind: "tier_changed".into(),
                    customer_id: id,
                    due_at_ms: 2,
                    detail_json: "{}".into(),
                    created_at_ms: 2,
                }),
            }
        })
        .collect();
    let stale = database.write(move |conn| loyalty::write_member_reviews(conn, &reviews)).await.unwrap();
    assert_eq!(stale, (1..=members / 10).map(|tenth| tenth * 10).collect::<Vec<_>>());
    let (silver, history, events, stale_touched) = database
        .read(|conn| {
            let count = |conn: &mut cardcrm_store::Conn<'_>, sql: &str| conn.query_one(sql, params![], |row| row.get::<i64>(0));
            Ok::<_, StoreError>((
                count(conn, "SELECT count(*) FROM loyalty_members WHERE tier = 'silver' AND version = 2")?,
                count(conn, "SELECT count(*) FROM loyalty_tier_history")?,
                count(conn, "SELECT count(*) FROM loyalty_events")?,
                count(
                    conn,
                    "SELECT count(*) FROM loyalty_members m WHERE m.customer_id % 10 = 0 AND (m.tier <> 'ordinary' \
                     OR m.version <> 1 OR EXISTS (SELECT 1 FROM loyalty_tier_history h WHERE h.customer_id = m.customer_id) \
                     OR EXISTS (SELECT 1 FROM loyalty_events e WHERE e.customer_id = m.customer_id))",
                )?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((silver, history, events, stale_touched), (90, 90, 90, 0));
}

/// Dropped in order: waits for the test's signal, then lets the database handle go, then
/// reports that it went.
struct LastHandle {
    wait: std::sync::mpsc::Receiver<()>,
    database: Option<Database>,
    gone: std::sync::mpsc::Sender<()>,
}

impl Drop for LastHandle {
    fn drop(&mut self) {
        let _ = self.wait.recv();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(self.database.take())));
        let _ = self.gone.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_handle_may_go_with_a_unit_of_work_on_a_worker() {
    let (_test, database) = open();
    // Worker threads that panic while this test runs (other tests here do not panic there).
    let worker_panics = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = worker_panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        if name.starts_with("sqlite") || name.starts_with("postgres") {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        previous(info);
    }));
    let (release, wait) = std::sync::mpsc::channel();
    let (gone, went) = std::sync::mpsc::channel();
    let last = LastHandle { wait, database: Some(database.clone()), gone };
    database
        .write(move |_conn| {
            let _holds = &last;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("unit of work");
    // Every other handle goes first; the worker then drops the unit with the last one.
    drop(database);
    release.send(()).expect("release");
    went.recv_timeout(std::time::Duration::from_secs(10)).expect("the last handle went");
    assert_eq!(
        worker_panics.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a worker panicked dropping the last handle"
    );
}
