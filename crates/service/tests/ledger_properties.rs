//! Property tests of the stored-value ledger: random sequences of top-ups, payments, refunds,
//! transfers, replacements, closings, repeats of earlier requests and jumps of the clock,
//! against a simple model of what each card should hold. After every step the balances
//! match the model; after every sequence `verify` finds nothing wrong, every statement
//! reconciles and every day's reconciliation balances. Runs on SQLite, and on PostgreSQL
//! when TEST_DATABASE_URL names a server.

use std::sync::Arc;

use cardcrm_domain::ledger::BonusRule;
use cardcrm_service::{
    Identity, ServiceError, Services,
    cards::{IssueCardInput, ProductInput},
    clock::ManualClock,
    config::{Secret, Settings},
    crypto::KeyMaterial,
    customers::CustomerRequest,
    ledger::{CloseInput, IdempotencyKey, RefundInput, ReplaceInput, SpendInput, TopUpInput, TransferInput},
};
use cardcrm_store::testing::TestDatabase;
use proptest::{prelude::*, test_runner::TestRunner};

const SLOTS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    TopUp {
        slot: usize,
        amount: i64,
    },
    Spend {
        slot: usize,
        amount: i64,
    },
    /// Refund (part of) the `pick`-th payment made so far.
    Refund {
        pick: usize,
        amount: Option<i64>,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    Replace {
        slot: usize,
    },
    Close {
        slot: usize,
    },
    /// Send the `pick`-th earlier request again with its key.
    Repeat {
        pick: usize,
    },
    Advance {
        hours: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let slot = 0..SLOTS;
    prop_oneof![
        4 => (slot.clone(), prop_oneof![1_i64..5_000, 90_000_i64..150_000]).prop_map(|(slot, amount)| Step::TopUp { slot, amount }),
        5 => (slot.clone(), 1_i64..60_000).prop_map(|(slot, amount)| Step::Spend { slot, amount }),
        2 => (any::<usize>(), proptest::option::of(1_i64..40_000)).prop_map(|(pick, amount)| Step::Refund { pick, amount }),
        2 => (slot.clone(), slot.clone(), 1_i64..50_000).prop_map(|(from, to, amount)| Step::Transfer { from, to, amount }),
        1 => slot.clone().prop_map(|slot| Step::Replace { slot }),
        1 => slot.prop_map(|slot| Step::Close { slot }),
        2 => any::<usize>().prop_map(|pick| Step::Repeat { pick }),
        1 => (0_i64..60).prop_map(|hours| Step::Advance { hours }),
    ]
}

/// What the model expects of one logical card (a card and the cards that replaced it).
#[derive(Debug, Clone)]
struct Slot {
    card_id: i64,
    total_minor: i64,
    closed: bool,
}

#[derive(Debug, Clone)]
struct Payment {
    operation_id: i64,
    slot: usize,
    remaining_minor: i64,
}

/// A request already sent, to send again.
#[derive(Debug, Clone)]
enum Sent {
    TopUp(String, i64, TopUpInput),
    Spend(String, i64, SpendInput),
}

struct World {
    services: Services,
    clock: ManualClock,
    _database: TestDatabase,
    _directory: tempfile::TempDir,
    product: String,
    customer_seq: u64,
    key_seq: u64,
}

fn code(error: &ServiceError) -> String {
    match error {
        ServiceError::Conflict { code, .. } => (*code).to_owned(),
        other => format!("{other:?}"),
    }
}

/// The problem code of a refused request; `None` when it succeeded.
fn refused<T>(result: Result<T, ServiceError>) -> Option<String> {
    result.err().map(|error| code(&error))
}

fn system() -> Identity {
    Identity::system("property-test")
}

impl World {
    async fn open() -> Self {
        let directory = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create().expect("database");
        let mut settings = Settings { data_dir: directory.path().to_path_buf(), ..Settings::default() };
        settings.database_url = Some(Secret::new(database.url()));
        settings.database.postgres_connections = 2;
        settings.database.sqlite_readers = 1;
        // Alerts are not under test here; keep them out of the way.
        settings.ledger.velocity_operations_max = 1_000_000;
        let clock = ManualClock::new("2026-03-01T02:00:00Z".parse().expect("time"));
        let services = Services::open_with_keys(settings, Arc::new(clock.clone()), &KeyMaterial::generate())
            .await
            .expect("services");
        let identity = system();
        let product = services
            .create_product(
                identity.grant().expect("grant"),
                ProductInput {
                    code: Some("PROP".into()),
                    name: Some("property 储值卡".into()),
                    kind: Some("stored_value".into()),
                    bonus_rules: Some(vec![BonusRule { min_top_up_minor: 100_000, bonus_minor: 10_000 }]),
                    ..ProductInput::default()
                },
            )
            .await
            .expect("product");
        Self {
            services,
            clock,
            _database: database,
            _directory: directory,
            product: product.code,
            customer_seq: 0,
            key_seq: 0,
        }
    }

    fn key(&mut self) -> (String, IdempotencyKey) {
        self.key_seq += 1;
        let text = format!("property-{:08}", self.key_seq);
        (text.clone(), IdempotencyKey::parse(&text).expect("key"))
    }

    async fn slots(&mut self) -> Vec<Slot> {
        self.customer_seq += 1;
        let identity = system();
        let customer = self
            .services
            .create_customer(
                identity.grant().expect("grant"),
                CustomerRequest {
                    name: Some("测试".into()),
                    phone: Some(format!("139{:08}", self.customer_seq)),
                    ..CustomerRequest::default()
                },
            )
            .await
            .expect("customer");
        let mut slots = Vec::new();
        for _ in 0..SLOTS {
            let issued = self
                .services
                .issue_card(
                    identity.grant().expect("grant"),
                    IssueCardInput {
                        customer_id: customer.customer.id,
                        product: self.product.clone(),
                        form: None,
                        store_id: None,
                        number: None,
                        pin: None,
                        activate: Some(true),
                    },
                )
                .await
                .expect("card");
            slots.push(Slot { card_id: issued.card.id, total_minor: 0, closed: false });
        }
        slots
    }

    async fn check_balances(&self, slots: &[Slot]) -> Result<(), TestCaseError> {
        let identity = system();
        for slot in slots {
            let balance = self.services.balance(identity.grant().expect("grant"), slot.card_id).await;
            let balance = balance.map_err(|error| TestCaseError::fail(format!("balance: {error}")))?;
            prop_assert_eq!(balance.total_minor, slot.total_minor, "card {}", slot.card_id);
            prop_assert!(balance.paid_minor >= 0 && balance.bonus_minor >= 0);
        }
        Ok(())
    }
}

fn bonus(amount: i64) -> i64 {
    if amount >= 100_000 { 10_000 } else { 0 }
}

async fn run_case(world: &mut World, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let identity = system();
    let mut slots = world.slots().await;
    let mut payments: Vec<Payment> = Vec::new();
    let mut sent: Vec<(Sent, Result<i64, String>)> = Vec::new();
    let started_ms = world.services.now_ms();
    let mut all_cards: Vec<i64> = slots.iter().map(|slot| slot.card_id).collect();
    for step in steps {
        match step {
            Step::TopUp { slot, amount } => {
                let (text, key) = world.key();
                let input = TopUpInput {
                    amount_minor: amount,
                    payment_method: "cash".into(),
                    store_id: None,
                    reference: None,
                    currency: None,
                };
                let card = slots[slot].card_id;
                let result =
                    world.services.top_up(identity.grant().expect("grant"), key, card, input.clone()).await;
                if slots[slot].closed {
                    prop_assert_eq!(refused(result), Some("card.closed".to_owned()));
                } else {
                    let outcome = result.map_err(|error| TestCaseError::fail(format!("top-up: {error}")))?;
                    prop_assert_eq!(outcome.value.amount_minor, amount + bonus(amount));
                    slots[slot].total_minor += amount + bonus(amount);
                    sent.push((Sent::TopUp(text, card, input), Ok(outcome.value.id)));
                }
            }
            Step::Spend { slot, amount } => {
                let (text, key) = world.key();
                let input = SpendInput {
                    amount_minor: amount,
                    store_id: None,
                    pin: None,
                    reference: None,
                    currency: None,
                };
                let card = slots[slot].card_id;
                let result =
                    world.services.spend(identity.grant().expect("grant"), key, card, input.clone()).await;
                if slots[slot].closed {
                    prop_assert_eq!(refused(result), Some("card.closed".to_owned()));
                } else if slots[slot].total_minor < amount {
                    prop_assert_eq!(refused(result), Some("balance.insufficient".to_owned()));
                    sent.push((Sent::Spend(text, card, input), Err("balance.insufficient".into())));
                } else {
                    let outcome = result.map_err(|error| TestCaseError::fail(format!("spend: {error}")))?;
                    slots[slot].total_minor -= amount;
                    payments.push(Payment { operation_id: outcome.value.id, slot, remaining_minor: amount });
                    sent.push((Sent::Spend(text, card, input), Ok(outcome.value.id)));
                }
            }
            Step::Refund { pick, amount } => {
                if payments.is_empty() {
                    continue;
                }
                let index = pick % payments.len();
                let payment = payments[index].clone();
                let (_, key) = world.key();
                let input = RefundInput { amount_minor: amount, reason: None };
                let result = world
                    .services
                    .refund(identity.grant().expect("grant"), key, payment.operation_id, input)
                    .await;
                let wanted = amount.unwrap_or(payment.remaining_minor);
                if payment.remaining_minor == 0 || wanted > payment.remaining_minor {
                    prop_assert_eq!(refused(result), Some("refund.exceeds_remaining".to_owned()));
                } else if slots[payment.slot].closed {
                    prop_assert_eq!(refused(result), Some("card.closed".to_owned()));
                } else {
                    let outcome = result.map_err(|error| TestCaseError::fail(format!("refund: {error}")))?;
                    prop_assert_eq!(outcome.value.amount_minor, wanted);
                    prop_assert_eq!(
                        outcome.value.card_id,
                        Some(slots[payment.slot].card_id),
                        "back to the card in use"
                    );
                    payments[index].remaining_minor -= wanted;
                    slots[payment.slot].total_minor += wanted;
                }
            }
            Step::Transfer { from, to, amount } => {
                let (_, key) = world.key();
                let input = TransferInput { to_card_id: slots[to].card_id, amount_minor: amount, pin: None };
                let result = world
                    .services
                    .transfer_value(identity.grant().expect("grant"), key, slots[from].card_id, input)
                    .await;
                let ok = from != to
                    && !slots[from].closed
                    && !slots[to].closed
                    && slots[from].total_minor >= amount;
                if ok {
                    result.map_err(|error| TestCaseError::fail(format!("transfer: {error}")))?;
                    slots[from].total_minor -= amount;
                    slots[to].total_minor += amount;
                } else {
                    prop_assert!(result.is_err(), "a transfer the model refuses went through");
                }
            }
            Step::Replace { slot } => {
                let (_, key) = world.key();
                let result = world
                    .services
                    .replace_card(
                        identity.grant().expect("grant"),
                        key,
                        slots[slot].card_id,
                        ReplaceInput::default(),
                    )
                    .await;
                if slots[slot].closed {
                    prop_assert!(result.is_err());
                } else {
                    let outcome = result.map_err(|error| TestCaseError::fail(format!("replace: {error}")))?;
                    prop_assert_eq!(outcome.value.old_card.status.as_str(), "replaced");
                    slots[slot].card_id = outcome.value.new_card.id;
                    all_cards.push(outcome.value.new_card.id);
                }
            }
            Step::Close { slot } => {
                let (_, key) = world.key();
                let result = world
                    .services
                    .close_card(
                        identity.grant().expect("grant"),
                        key,
                        slots[slot].card_id,
                        CloseInput::default(),
                    )
                    .await;
                if slots[slot].closed {
                    prop_assert!(result.is_err());
                } else {
                    let outcome = result.map_err(|error| TestCaseError::fail(format!("close: {error}")))?;
                    prop_assert_eq!(outcome.value.amount_minor, slots[slot].total_minor);
                    slots[slot].total_minor = 0;
                    slots[slot].closed = true;
                }
            }
            Step::Repeat { pick } => {
                if sent.is_empty() {
                    continue;
                }
                let (request, first) = sent[pick % sent.len()].clone();
                let again = match request {
                    Sent::TopUp(text, card, input) => {
                        let key = IdempotencyKey::parse(&text).expect("key");
                        world
                            .services
                            .top_up(identity.grant().expect("grant"), key, card, input)
                            .await
                            .map(|outcome| (outcome.value.id, outcome.replayed))
                    }
                    Sent::Spend(text, card, input) => {
                        let key = IdempotencyKey::parse(&text).expect("key");
                        world
                            .services
                            .spend(identity.grant().expect("grant"), key, card, input)
                            .await
                            .map(|outcome| (outcome.value.id, outcome.replayed))
                    }
                };
                match first {
                    Ok(id) => prop_assert_eq!(again.map_err(|error| code(&error)), Ok((id, true))),
                    Err(refused) => prop_assert_eq!(again.map_err(|error| code(&error)).err(), Some(refused)),
                }
            }
            Step::Advance { hours } => world.clock.advance_ms(hours * 3_600_000),
        }
        world.check_balances(&slots).await?;
    }

    // Whole-ledger invariants.
    let verification = world.services.verify_ledger(identity.grant().expect("grant")).await.expect("verify");
    prop_assert!(verification.ok, "{:?}", verification);
    // Every card's statement over the case reconciles (the service refuses to answer if
    // opening + lines differs from closing) and ends at the model's balance.
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone");
    let day = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).expect("time").to_zoned(zone.clone()).date().to_string()
    };
    let (first_day, last_day) = (day(started_ms), day(world.services.now_ms()));
    for card in &all_cards {
        let statement =
            world.services.statement(identity.grant().expect("grant"), *card, &first_day, &last_day).await;
        let statement =
            statement.map_err(|error| TestCaseError::fail(format!("statement of {card}: {error}")))?;
        if let Some(slot) = slots.iter().find(|slot| slot.card_id == *card) {
            prop_assert_eq!(statement.closing.total_minor, slot.total_minor);
        } else {
            prop_assert_eq!(statement.closing.total_minor, 0, "a replaced card keeps nothing");
        }
    }
    let report = world
        .services
        .reconciliation(identity.grant().expect("grant"), &last_day)
        .await
        .expect("reconciliation");
    prop_assert!(report.balanced, "{:?}", report);
    Ok(())
}

#[test]
fn random_sequences_of_operations_keep_every_ledger_invariant() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let world = std::cell::RefCell::new(runtime.block_on(World::open()));
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(32);
    let mut runner =
        TestRunner::new(ProptestConfig { cases, max_shrink_iters: 200, ..ProptestConfig::default() });
    let result = runner.run(&proptest::collection::vec(step(), 1..40), |steps| {
        runtime.block_on(run_case(&mut world.borrow_mut(), steps))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn idempotency_keys_are_kept_for_their_retention_and_then_forgotten() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut world = World::open().await;
        let slots = world.slots().await;
        let identity = system();
        let input = TopUpInput {
            amount_minor: 1_000,
            payment_method: "cash".into(),
            store_id: None,
            reference: None,
            currency: None,
        };
        let key = || IdempotencyKey::parse("retention-key-1").expect("key");
        let first = world
            .services
            .top_up(identity.grant().expect("grant"), key(), slots[0].card_id, input.clone())
            .await
            .expect("top-up");
        world.clock.advance_ms(29 * 86_400_000);
        assert_eq!(world.services.purge_idempotency_keys().await.expect("purge"), 0);
        let again = world
            .services
            .top_up(identity.grant().expect("grant"), key(), slots[0].card_id, input.clone())
            .await
            .expect("repeat");
        assert!(again.replayed && again.value.id == first.value.id);
        world.clock.advance_ms(2 * 86_400_000);
        assert_eq!(world.services.purge_idempotency_keys().await.expect("purge"), 1);
        let fresh = world
            .services
            .top_up(identity.grant().expect("grant"), key(), slots[0].card_id, input)
            .await
            .expect("fresh");
        assert!(!fresh.replayed && fresh.value.id != first.value.id, "a forgotten key is a new request");
    });
}
