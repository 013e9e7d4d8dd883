//! The command line: settings layering and secrecy, staff accounts, migrations, the demo,
//! generated benchmark files, and refusing keys that do not fit the database.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::spawn_app;

fn cardcrm(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardcrm"));
    command.args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("CARDCRM_") {
            command.env_remove(key);
        }
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("run cardcrm")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn settings_layer_defaults_file_environment_flags_and_hide_secrets() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().to_str().unwrap();
    std::fs::write(
        directory.path().join("cardcrm.toml"),
        "listen = \"0.0.0.0:9001\"\nlog = \"debug\"\ndatabase_url = \"postgres://crm:hunter2@db.internal/crm\"\n\
         [http]\nbody_limit_bytes = 1000\n[security]\nblind_index_key = \"c2VjcmV0LWluZGV4LWtleS1zZWNyZXQtaW5kZXgta2V5\"\n",
    )
    .unwrap();
    let output = cardcrm(
        &["--data-dir", data, "config"],
        &[("CARDCRM_LOG", "warn"), ("CARDCRM_HTTP__BODY_LIMIT_BYTES", "4096")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let settings: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(settings["listen"], "0.0.0.0:9001", "the file beats the default");
    assert_eq!(settings["log"], "warn", "the environment beats the file");
    assert_eq!(settings["http"]["body_limit_bytes"], 4096);
    assert_eq!(settings["http"]["request_timeout_ms"], 30_000, "defaults fill the rest");
    assert_eq!(settings["database_url"], "postgres://crm:***@db.internal/crm");
    let printed = stdout(&output);
    assert!(!printed.contains("hunter2") && !printed.contains("c2VjcmV0"), "{printed}");

    let flagged = cardcrm(&["--data-dir", data, "--database-url", "/tmp/other.db", "config"], &[]);
    let settings: Value = serde_json::from_str(&stdout(&flagged)).unwrap();
    assert_eq!(settings["database_url"], "/tmp/other.db", "a flag beats the file");
}

#[test]
fn unknown_settings_are_refused_wherever_they_come_from() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().to_str().unwrap();
    std::fs::write(directory.path().join("cardcrm.toml"), "listen = \"127.0.0.1:1\"\nlisten_port = 9\n")
        .unwrap();
    let output = cardcrm(&["--data-dir", data, "config"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("listen_port"), "{}", stderr(&output));
    std::fs::remove_file(directory.path().join("cardcrm.toml")).unwrap();
    let output = cardcrm(&["--data-dir", data, "config"], &[("CARDCRM_HTTP__BODY_LIMT", "5")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("body_limt"), "{}", stderr(&output));
    let output = cardcrm(&["--data-dir", data, "config"], &[("CARDCRM_LISTEN", "not an address")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not an address"), "{}", stderr(&output));
}

#[tokio::test]
async fn staff_accounts_from_the_command_line_can_sign_in() {
    let app = spawn_app().await;
    let added = app.cli(&["user", "add", "--username", "Wang.Fang", "--role", "manager"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let text = stdout(&added);
    let password =
        text.lines().find_map(|line| line.strip_prefix("password: ")).expect("generated password").to_owned();
    let session = app.login("wang.fang", &password).await;
    assert_eq!(app.get(&session, "/api/v1/auth/me").await.body["role"], "manager");

    let reset = app.cli(&["user", "reset", "--username", "wang.fang"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let after = app.get(&session, "/api/v1/auth/me").await;
    assert_eq!(after.status, reqwest::StatusCode::UNAUTHORIZED, "a reset ends the sessions");
    let listed = app.cli(&["user", "list"]);
    assert!(stdout(&listed).contains("wang.fang"));
    let bad_role = app.cli(&["user", "add", "--username", "x.y", "--role", "boss"]);
    assert_eq!(bad_role.status.code(), Some(2));
    assert!(stderr(&bad_role).contains("is not a role"), "{}", stderr(&bad_role));
}

#[test]
fn migrate_demo_and_generate_work_on_a_fresh_directory() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().to_str().unwrap();
    let migrated = cardcrm(&["--data-dir", data, "migrate"], &[]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let version = format!("schema version {}", cardcrm_store::migrate::latest_version());
    assert!(stdout(&migrated).contains(&version), "{}", stdout(&migrated));
    let demo = cardcrm(
        &["--data-dir", data, "demo", "--customers", "200", "--transactions", "1000", "--no-serve"],
        &[],
    );
    assert!(demo.status.success(), "{}", stderr(&demo));
    let text = stdout(&demo);
    assert!(text.contains("customers: 200 rows") && text.contains("transactions: 1000 rows"), "{text}");
    assert!(text.lines().any(|line| line.trim_start().starts_with("admin ")), "{text}");
    // The card holders are members with points, coupons and mall orders, on a ledger that verifies.
    let loyalty = text.lines().find(|line| line.trim_start().starts_with("loyalty: ")).unwrap_or_default();
    assert!(loyalty.contains("members enrolled") && loyalty.contains("checkouts earning points"), "{text}");
    let verified = cardcrm(&["--data-dir", data, "ledger", "verify"], &[]);
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));
    let again = cardcrm(&["--data-dir", data, "demo", "--no-serve"], &[]);
    assert!(stdout(&again).contains("keeping them"), "{}", stdout(&again));

    let out = directory.path().join("bench");
    let generated = cardcrm(
        &["generate", "--customers", "50", "--transactions", "400", "--out", out.to_str().unwrap()],
        &[],
    );
    assert!(generated.status.success(), "{}", stderr(&generated));
    let lines = |name: &str| std::fs::read_to_string(out.join(name)).unwrap().lines().count();
    assert_eq!((lines("customers.csv"), lines("transactions.csv")), (51, 401));
    assert!(lines("stores.csv") > 10);
}

#[test]
fn keys_that_do_not_fit_the_database_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().to_str().unwrap();
    assert!(cardcrm(&["--data-dir", data, "migrate"], &[]).status.success());
    std::fs::remove_file(directory.path().join("keys.toml")).unwrap();
    let key = "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS0=";
    let output = cardcrm(
        &["--data-dir", data, "migrate"],
        &[
            ("CARDCRM_SECURITY__BLIND_INDEX_KEY", key),
            ("CARDCRM_SECURITY__ENCRYPTION_KEYS", &format!("{{1=\"{key}\"}}")),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("not the one this database was written with"), "{}", stderr(&output));
}

#[test]
fn serve_answers_health_checks_and_stops_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardcrm"))
        .args(["--data-dir", data, "serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    let address = loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "serve exited before listening");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
}
