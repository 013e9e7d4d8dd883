//! `spawn_app()`: a real server on a free port over a fresh database, and small helpers to
//! talk to it as a signed-in staff member or an API token.

use std::{path::PathBuf, sync::Arc};

use cardcrm_service::{
    Identity, Services, clock::SystemClock, config::Settings, crypto::KeyMaterial, staff::NewStaff,
    stores::StoreInput,
};
use cardcrm_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct TestApp {
    pub address: String,
    pub services: Services,
    pub data_dir: PathBuf,
    pub database: Arc<TestDatabase>,
    pub client: reqwest::Client,
    _data_dir: Arc<tempfile::TempDir>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Settings for a test: its own data directory and database, generous rate limits.
pub fn test_settings(data_dir: &std::path::Path, database: &TestDatabase) -> Settings {
    let mut settings = Settings { data_dir: data_dir.to_path_buf(), ..Settings::default() };
    settings.database_url = Some(cardcrm_service::config::Secret::new(database.url()));
    settings.http.rate_limit_per_second = 0;
    settings.database.postgres_connections = 4;
    settings.database.sqlite_readers = 2;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create().expect("test database");
    let mut settings = test_settings(data_dir.path(), &database);
    adjust(&mut settings);
    let keys = KeyMaterial::generate();
    // The command line finds the same keys in the data directory.
    cardcrm_service::config::write_key_file(&data_dir.path().join("keys.toml"), &keys).expect("key file");
    serve_on(settings, &keys, Arc::new(database), Arc::new(data_dir)).await
}

/// An app whose clock stands still until the test moves it.
pub async fn spawn_app_at(clock: Arc<cardcrm_service::clock::ManualClock>) -> TestApp {
    spawn_app_at_with(clock, |_| {}).await
}

/// The same, with settings adjusted.
pub async fn spawn_app_at_with(
    clock: Arc<cardcrm_service::clock::ManualClock>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create().expect("test database");
    let mut settings = test_settings(data_dir.path(), &database);
    adjust(&mut settings);
    let keys = KeyMaterial::generate();
    cardcrm_service::config::write_key_file(&data_dir.path().join("keys.toml"), &keys).expect("key file");
    serve_with_clock(settings, &keys, Arc::new(database), Arc::new(data_dir), clock).await
}

async fn serve_on(
    settings: Settings,
    keys: &KeyMaterial,
    database: Arc<TestDatabase>,
    data_dir: Arc<tempfile::TempDir>,
) -> TestApp {
    serve_with_clock(settings, keys, database, data_dir, Arc::new(SystemClock)).await
}

async fn serve_with_clock(
    settings: Settings,
    keys: &KeyMaterial,
    database: Arc<TestDatabase>,
    data_dir: Arc<tempfile::TempDir>,
    clock: Arc<dyn cardcrm_service::clock::Clock>,
) -> TestApp {
    let services = Services::open_with_keys(settings, clock, keys).await.expect("open services");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let app = cardcrm_web::app(services.clone());
    let server = tokio::spawn(async move {
        let _ = cardcrm_web::serve(listener, app, std::future::pending()).await;
    });
    TestApp {
        address,
        services,
        data_dir: data_dir.path().to_path_buf(),
        database,
        client: reqwest::Client::new(),
        _data_dir: data_dir,
        server,
    }
}

/// Another server over the same database, data directory and keys: a restart, as far as
/// anything stored is concerned.
pub async fn spawn_app_on(app: &TestApp) -> TestApp {
    let settings = test_settings(&app.data_dir, &app.database);
    let keys = settings.key_material(false).expect("keys");
    serve_on(settings, &keys, app.database.clone(), app._data_dir.clone()).await
}

/// An answer: status, headers and the JSON body (or `Value::Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn is_problem(&self) -> bool {
        self.content_type.starts_with("application/problem+json")
    }

    /// The problem code of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type =
        headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, content_type, headers, body, text }
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Session { cookie: String, csrf: String },
    Token(String),
}

impl TestApp {
    /// Runs the `cardcrm` binary against this app's data directory and database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_with_env(args, &[])
    }

    /// Like [`TestApp::cli`], with extra environment variables (settings such as
    /// `CARDCRM_IMPORT__BULK_ROWS_MIN`).
    pub fn cli_with_env(&self, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cardcrm"));
        command.envs(envs.iter().copied());
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--database-url")
            .arg(self.database.url())
            .args(args);
        command.env_remove("RUST_LOG").env("CARDCRM_LOG", "warn");
        command.output().expect("run cardcrm")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn request(&self, auth: &Auth, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        match auth {
            Auth::None => {}
            Auth::Session { cookie, csrf } => {
                request = request.header("cookie", cookie.as_str()).header("x-csrf-token", csrf.as_str());
            }
            Auth::Token(token) => request = request.bearer_auth(token),
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.expect("request")).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> Answer {
        answer(request.send().await.expect("request")).await
    }

    pub async fn get(&self, auth: &Auth, path: &str) -> Answer {
        self.request(auth, Method::GET, path, None).await
    }

    pub async fn post(&self, auth: &Auth, path: &str, body: Value) -> Answer {
        self.request(auth, Method::POST, path, Some(body)).await
    }

    /// A request that moves value, with its `Idempotency-Key`.
    pub async fn post_keyed(&self, auth: &Auth, path: &str, key: &str, body: Value) -> Answer {
        let mut request = self.client.post(self.url(path)).header("idempotency-key", key).json(&body);
        match auth {
            Auth::None => {}
            Auth::Session { cookie, csrf } => {
                request = request.header("cookie", cookie.as_str()).header("x-csrf-token", csrf.as_str());
            }
            Auth::Token(token) => request = request.bearer_auth(token),
        }
        answer(request.send().await.expect("request")).await
    }

    pub async fn patch(&self, auth: &Auth, path: &str, body: Value) -> Answer {
        self.request(auth, Method::PATCH, path, Some(body)).await
    }

    /// Creates a staff member through the service layer (as the system), returning the password.
    pub async fn add_staff(&self, username: &str, role: &str, store_id: Option<i64>) -> String {
        let system = Identity::system("test");
        let password = "correct horse battery staple".to_owned();
        self.services
            .create_staff(
                system.grant().unwrap(),
                NewStaff {
                    username: username.into(),
                    display_name: None,
                    role: role.into(),
                    store_id,
                    password: Some(password.clone()),
                },
            )
            .await
            .expect("create staff");
        password
    }

    pub async fn add_store(&self, code: &str) -> i64 {
        let system = Identity::system("test");
        self.services
            .create_store(
                system.grant().unwrap(),
                StoreInput {
                    code: Some(code.into()),
                    name: Some(format!("{code} 店")),
                    ..StoreInput::default()
                },
            )
            .await
            .expect("create store")
            .id
    }

    pub async fn login(&self, username: &str, password: &str) -> Auth {
        let answer = self
            .raw(
                self.client
                    .post(self.url("/api/v1/auth/login"))
                    .json(&json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "login of {username}: {}", answer.text);
        let cookie = answer
            .headers
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .expect("session cookie")
            .to_owned();
        Auth::Session { cookie, csrf: answer.body["csrf_token"].as_str().expect("csrf token").to_owned() }
    }

    /// A signed-in staff member of `role` (created on the fly).
    pub async fn staff_session(&self, username: &str, role: &str, store_id: Option<i64>) -> Auth {
        let password = self.add_staff(username, role, store_id).await;
        self.login(username, &password).await
    }

    pub async fn admin(&self) -> Auth {
        self.staff_session("admin", "admin", None).await
    }

    /// Registers a customer through the API and returns its JSON.
    pub async fn create_customer(&self, auth: &Auth, body: Value) -> Value {
        let answer = self.post(auth, "/api/v1/customers", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.body["customer"].clone()
    }
}

/// A stored-value product (no PIN, generous limits) with optional extra fields; its id.
pub async fn stored_value_product(app: &TestApp, admin: &Auth, code: &str, extra: Value) -> i64 {
    let mut body = json!({"code": code, "name": format!("{code} 储值卡"), "kind": "stored_value"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let answer = app.post(admin, "/api/v1/card-products", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.body["id"].as_i64().expect("product id")
}

/// Issues a card of `product` to a new customer; returns (card id, customer id, full number).
pub async fn issue_card(app: &TestApp, admin: &Auth, product: &str, phone: &str) -> (i64, i64, String) {
    let customer = app.create_customer(admin, json!({"name": "王小明", "phone": phone})).await;
    let customer_id = customer["id"].as_i64().expect("customer id");
    let answer =
        app.post(admin, "/api/v1/cards", json!({"customer_id": customer_id, "product": product})).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let card_id = answer.body["card"]["id"].as_i64().expect("card id");
    (card_id, customer_id, answer.body["full_number"].as_str().expect("number").to_owned())
}

/// Tops a card up with `amount_minor` paid in cash; the answer's body.
pub async fn top_up(app: &TestApp, auth: &Auth, card_id: i64, amount_minor: i64, key: &str) -> Value {
    let answer = app
        .post_keyed(
            auth,
            &format!("/api/v1/cards/{card_id}/top-ups"),
            key,
            json!({"amount_minor": amount_minor, "payment_method": "cash"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.body
}
