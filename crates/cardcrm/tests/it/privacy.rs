//! Personal data at rest: the database never holds a phone number, e-mail, ID number or
//! address in plain text, and a ciphertext moved to another customer does not open.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::spawn_app;

const PHONE: &str = "13812345678";
const EMAIL: &str = "secret.person@example.com";
const ID_NUMBER: &str = "11010519491231002X";
const ADDRESS: &str = "上海市黄浦区人民大道200号";

/// Everything the database holds, as text: the SQLite files byte by byte, or every row of
/// every table on PostgreSQL.
pub(crate) fn database_contents(app: &crate::support::TestApp) -> Vec<u8> {
    match app.database.location() {
        cardcrm_store::Location::Sqlite(path) => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                let file = format!("{}{suffix}", path.display());
                if let Ok(content) = std::fs::read(&file) {
                    bytes.extend(content);
                }
            }
            bytes
        }
        cardcrm_store::Location::Postgres(url) => {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let tables: Vec<String> = client
                    .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[])
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut text = String::new();
                for table in tables {
                    for row in client.query(&format!("SELECT t::text FROM {table} t"), &[]).unwrap() {
                        text.push_str(row.get::<_, &str>(0));
                        text.push('\n');
                    }
                }
                text.into_bytes()
            })
            .join()
            .unwrap()
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn the_database_never_holds_personal_data_in_plain_text() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let customer = app
        .create_customer(&admin, json!({"name": "隐私测试", "phone": PHONE, "email": EMAIL, "id_number": ID_NUMBER, "address": ADDRESS}))
        .await;
    let id = customer["id"].as_i64().unwrap();
    // An update and a reveal write again (new ciphertexts, audit entries).
    app.patch(&admin, &format!("/api/v1/customers/{id}"), json!({"city": "上海"})).await;
    app.get(&admin, &format!("/api/v1/customers/{id}?reveal=true")).await;
    let contents = database_contents(&app);
    assert!(contains(&contents, "隐私测试"), "the check can see plain text at all");
    for secret in [PHONE, "+8613812345678", EMAIL, ID_NUMBER, ADDRESS, "人民大道"] {
        assert!(!contains(&contents, secret), "{secret} is stored in plain text");
    }
    let found = app.get(&admin, &format!("/api/v1/customers?phone={PHONE}")).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["items"][0]["id"], id, "exact lookup works through the blind index");
}

#[tokio::test]
async fn a_ciphertext_copied_to_another_customer_does_not_open() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let first = app.create_customer(&admin, json!({"name": "甲", "phone": "13811112222"})).await["id"]
        .as_i64()
        .unwrap();
    let second = app.create_customer(&admin, json!({"name": "乙", "phone": "13933334444"})).await["id"]
        .as_i64()
        .unwrap();
    // Someone with write access to the database moves a phone number to another customer.
    app.services
        .database()
        .write(move |conn| {
            conn.execute(
                "UPDATE customers SET phone_cipher = (SELECT phone_cipher FROM customers WHERE id = $1) WHERE id = $2",
                &[first.into(), second.into()],
            )
        })
        .await
        .unwrap();
    let tampered = app.get(&admin, &format!("/api/v1/customers/{second}")).await;
    assert_eq!(tampered.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", tampered.text);
    assert!(tampered.is_problem());
    assert!(!tampered.text.contains("1381111"), "nothing of the moved value leaks");
    let untouched = app.get(&admin, &format!("/api/v1/customers/{first}")).await;
    assert_eq!(untouched.body["phone"], "138****2222");
}
