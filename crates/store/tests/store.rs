//! The storage layer's own story, run on SQLite and (with TEST_DATABASE_URL) PostgreSQL:
//! group-committed writes, savepoint isolation of failed units, constraint mapping, bulk paths.

use cardcrm_store::{
    Database, DatabaseOptions, StoreError, params,
    repo::{organisation, purchases},
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
