//! A crash in the middle of a load: the `cardcrm` binary is killed with SIGKILL while top-ups
//! and payments stream in, started again, and must still hold every operation it
//! acknowledged, with a ledger that verifies.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Auth, TestApp, issue_card, spawn_app, stored_value_product, top_up};

/// The `cardcrm serve` process over the test app's database and data directory.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(app: &TestApp) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cardcrm"))
            .arg("--data-dir")
            .arg(&app.data_dir)
            .arg("--database-url")
            .arg(app.database.url())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CARDCRM_HTTP__RATE_LIMIT_PER_SECOND", "0")
            .env("CARDCRM_LOG", "warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cardcrm serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let address = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_owned();
        Self { child, address }
    }

    fn kill(&mut self) {
        // std's kill is SIGKILL on Unix: no shutdown, no checkpoint, no flush.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An acknowledged request: what was sent and the operation the server said it made.
#[derive(Debug, Clone)]
struct Acknowledged {
    key: String,
    path: String,
    body: Value,
    operation_id: i64,
    amount_minor: i64,
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> Result<(StatusCode, Value, bool), reqwest::Error> {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|value| value == "true");
    let body = response.json::<Value>().await?;
    Ok((status, body, replayed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_during_a_load_keeps_every_acknowledged_operation_and_the_ledger_verifies() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(
        &app,
        &admin,
        "SV",
        json!({"bonus_rules": [{"min_top_up_minor": 5_000, "bonus_minor": 500}]}),
    )
    .await;
    let mut cards = Vec::new();
    for index in 0..4 {
        let (card_id, _, _) = issue_card(&app, &admin, "SV", &format!("1390000000{index}")).await;
        top_up(&app, &admin, card_id, 50_000, &format!("crash-seed-{index}")).await;
        cards.push(card_id);
    }
    let token = app
        .post(
            &admin,
            "/api/v1/tokens",
            json!({"name": "pos", "scopes": ["value.load", "value.spend", "card.read"]}),
        )
        .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.text);
    let token = token.body["token"].as_str().expect("token").to_owned();

    let mut server = Server::start(&app);
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let sent: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, base, token, cards) =
            (reqwest::Client::new(), server.address.clone(), token.clone(), cards.clone());
        let (acknowledged, sent) = (acknowledged.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            for step in 0_i64.. {
                let card = cards[(step as usize + worker) % cards.len()];
                let (path, body) = if step % 3 == 0 {
                    (
                        format!("/api/v1/cards/{card}/top-ups"),
                        json!({"amount_minor": 5_000 + step, "payment_method": "cash"}),
                    )
                } else {
                    (format!("/api/v1/cards/{card}/spends"), json!({"amount_minor": 1_000 + step}))
                };
                let key = format!("crash-{worker}-{step:06}");
                sent.lock().unwrap().push((key.clone(), path.clone(), body.clone()));
                match send(&client, &base, &token, &path, &key, &body).await {
                    Ok((StatusCode::CREATED, answer, _)) => acknowledged.lock().unwrap().push(Acknowledged {
                        key,
                        path,
                        body,
                        operation_id: answer["id"].as_i64().expect("operation id"),
                        amount_minor: answer["amount_minor"].as_i64().expect("amount"),
                    }),
                    Ok((StatusCode::CONFLICT, answer, _)) => {
                        assert_eq!(answer["code"], "balance.insufficient", "{answer}");
                    }
                    Ok((status, answer, _)) => panic!("{path}: {status} {answer}"),
                    // The server is gone.
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the load run, then pull the plug.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if acknowledged.lock().unwrap().len() >= 300 {
            break;
        }
    }
    server.kill();
    for worker in workers {
        worker.await.expect("worker");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 50, "the load ran: {} acknowledged", acknowledged.len());

    let verified = app.cli(&["ledger", "verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));

    let server = Server::start(&app);
    let client = reqwest::Client::new();
    let auth = Auth::Token(token.clone());
    for ack in &acknowledged {
        let stored = client
            .get(format!("{}/api/v1/operations/{}", server.address, ack.operation_id))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get operation");
        assert_eq!(
            stored.status(),
            StatusCode::OK,
            "operation {} of key {} is gone",
            ack.operation_id,
            ack.key
        );
        let stored: Value = stored.json().await.expect("json");
        assert_eq!(stored["amount_minor"], ack.amount_minor);
        let (status, again, replayed) =
            send(&client, &server.address, &token, &ack.path, &ack.key, &ack.body).await.expect("replay");
        assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
        assert_eq!(again["id"], ack.operation_id);
    }
    // Requests in flight at the kill were either done or not at all: sending them again
    // completes them once.
    let in_flight: Vec<(String, String, Value)> = sent
        .lock()
        .unwrap()
        .iter()
        .filter(|(key, _, _)| !acknowledged.iter().any(|ack| &ack.key == key))
        .cloned()
        .collect();
    for (key, path, body) in &in_flight {
        let (status, answer, _) =
            send(&client, &server.address, &token, path, key, body).await.expect("resend");
        assert!(matches!(status, StatusCode::CREATED | StatusCode::CONFLICT), "{status} {answer}");
    }
    let verified = app.cli(&["ledger", "verify", "--json"]);
    let report: Value = serde_json::from_slice(&verified.stdout).expect("verify json");
    assert!(verified.status.success() && report["ok"] == true, "{report}");
    // The balances are what the stored operations say.
    for card in &cards {
        let balance = app.get(&auth, &format!("/api/v1/cards/{card}/balance")).await;
        assert!(balance.body["total_minor"].as_i64().is_some_and(|total| total >= 0), "{}", balance.text);
    }
}
