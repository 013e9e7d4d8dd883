//! Property tests of points: random sequences of earning (offline sales), spending (mall
//! orders), refunds of sales, cancelled orders, transfers between members, merges of another
//! customer (with their points, and a mall order of theirs that a later step may cancel) into
//! a member, newcomers referred by a member whose first sale pays the referral bonus (and
//! takes it back when refunded whole), adjustments by hand (credits and debits), and jumps
//! of the clock with the expiry job. After every step each member's balance equals the points left
//! in their lots and a model's count of what they should hold; no lot holds points past its
//! expiry after the job; `verify` finds nothing wrong. Runs on SQLite, and on PostgreSQL
//! when TEST_DATABASE_URL names a server.

use std::sync::Arc;

use cardcrm_service::{
    Identity, Services,
    clock::ManualClock,
    config::{Secret, Settings},
    crypto::KeyMaterial,
    customers::CustomerRequest,
    ledger::IdempotencyKey,
    loyalty::{
        EnrolmentInput, PointsAdjustmentInput, PointsTransferInput, ProgrammeInput, SaleInput, SaleLine,
        SaleRefundInput, SaleView,
    },
    rewards::{OrderInput, OrderStatusInput, RewardInput},
};
use cardcrm_store::testing::TestDatabase;
use proptest::{prelude::*, test_runner::TestRunner};

const MEMBERS: usize = 2;

#[derive(Debug, Clone)]
enum Step {
    Earn {
        member: usize,
        amount: i64,
    },
    RefundSale {
        pick: usize,
        amount: Option<i64>,
    },
    Order {
        member: usize,
        quantity: i64,
    },
    Cancel {
        pick: usize,
    },
    Transfer {
        from: usize,
        points: i64,
    },
    /// A duplicate record of `member` that earned `amount` (and spent on the mall) is merged in.
    MergeIn {
        member: usize,
        amount: i64,
        order: bool,
    },
    /// A newcomer referred by `referrer` enrols and makes a first sale of `amount`.
    Referred {
        referrer: usize,
        amount: i64,
    },
    /// A manager credits (positive) or debits (negative) `points` by hand.
    Adjust {
        member: usize,
        points: i64,
    },
    Advance {
        days: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..MEMBERS, 100i64..50_000).prop_map(|(member, amount)| Step::Earn { member, amount }),
        2 => (0usize..20, proptest::option::of(100i64..20_000)).prop_map(|(pick, amount)| Step::RefundSale { pick, amount }),
        2 => (0..MEMBERS, 1i64..3).prop_map(|(member, quantity)| Step::Order { member, quantity }),
        1 => (0usize..20).prop_map(|pick| Step::Cancel { pick }),
        1 => (0..MEMBERS, 1i64..300).prop_map(|(from, points)| Step::Transfer { from, points }),
        1 => (0..MEMBERS, 100i64..50_000, any::<bool>()).prop_map(|(member, amount, order)| Step::MergeIn { member, amount, order }),
        1 => (0..MEMBERS, 100i64..50_000).prop_map(|(referrer, amount)| Step::Referred { referrer, amount }),
        1 => (0..MEMBERS, -400i64..400).prop_filter("not zero", |(_, points)| *points != 0).prop_map(|(member, points)| Step::Adjust { member, points }),
        2 => (1i64..400).prop_map(|days| Step::Advance { days }),
    ]
}

struct World {
    services: Services,
    clock: ManualClock,
    _database: TestDatabase,
    _directory: tempfile::TempDir,
    key_seq: u64,
    sale_seq: u64,
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
        let clock = ManualClock::new("2026-03-01T02:00:00Z".parse().expect("time"));
        let services = Services::open_with_keys(settings, Arc::new(clock.clone()), &KeyMaterial::generate())
            .await
            .expect("services");
        // Earning exactly 1 point per 100 minor whatever the tier: a member whose sales reach
        // silver (2,000.00) would otherwise earn 120%, and the model below counts points, not
        // tiers (the tier multiplier has its own unit tests).
        services
            .create_programme(
                system().grant().expect("grant"),
                ProgrammeInput {
                    effective_from: "2026-03-01T02:00:00Z".into(),
                    rules: serde_json::json!({"tier_multiplier": false, "referral_bonus_points": 150}),
                    note: Some("property test".into()),
                },
            )
            .await
            .expect("programme");
        Self { services, clock, _database: database, _directory: directory, key_seq: 0, sale_seq: 0 }
    }

    fn key(&mut self) -> IdempotencyKey {
        self.key_seq += 1;
        IdempotencyKey::parse(&format!("loyalty-prop-{:08}", self.key_seq)).expect("key")
    }

    async fn customer(&mut self) -> i64 {
        self.sale_seq += 1;
        let identity = system();
        self.services
            .create_customer(
                identity.grant().expect("grant"),
                CustomerRequest {
                    name: Some("积分".into()),
                    phone: Some(format!("137{:08}", self.sale_seq)),
                    ..CustomerRequest::default()
                },
            )
            .await
            .expect("customer")
            .customer
            .id
    }

    /// Balance and sum of lots of a member, which must agree.
    async fn points(&self, customer_id: i64) -> (i64, i64) {
        let identity = system();
        let member =
            self.services.member(identity.grant().expect("grant"), customer_id).await.expect("member");
        let lots = self
            .services
            .member_lots(identity.grant().expect("grant"), customer_id, false)
            .await
            .expect("lots");
        (member.points_balance, lots.iter().map(|lot| lot.points_remaining).sum())
    }

    /// An offline sale of `amount_minor` for a customer, under a receipt number of its own.
    async fn sale(&mut self, customer_id: i64, amount_minor: i64) -> SaleView {
        self.sale_seq += 1;
        let key = self.key();
        let input = SaleInput {
            customer_id,
            store_id: None,
            external_id: format!("S{}", self.sale_seq),
            lines: vec![SaleLine { amount_minor, category: None }],
        };
        self.services.record_sale(system().grant().expect("grant"), key, input).await.expect("sale").value
    }

    async fn owed(&self, customer_id: i64) -> i64 {
        let identity = system();
        self.services.member(identity.grant().expect("grant"), customer_id).await.expect("member").points_owed
    }
}

async fn run_case(world: &mut World, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let identity = system();
    let members = [world.customer().await, world.customer().await];
    let reward = world
        .services
        .create_reward(
            identity.grant().expect("grant"),
            RewardInput {
                code: format!("R{}", world.sale_seq),
                name: "杯子".into(),
                kind: "goods".into(),
                points_price: 120,
                cash_price_minor: 0,
                coupon_template_id: None,
                stock: Some(5),
                per_member_max: None,
            },
        )
        .await
        .expect("reward");
    // The model: what each member should hold, as the steps' answers say.
    let mut held = [0_i64; MEMBERS];
    // Sales: whose points they earned (none: a newcomer's), the operation, who referred them,
    // what is left to refund.
    let mut sales: Vec<(Option<usize>, i64, Option<usize>, i64)> = Vec::new();
    let mut orders: Vec<(usize, i64, i64)> = Vec::new();
    for step in steps {
        match step {
            Step::Earn { member, amount } => {
                let sale = world.sale(members[member], amount).await;
                prop_assert_eq!(sale.points.points, amount / 100);
                held[member] += sale.points.points - sale.points.owed_repaid;
                sales.push((Some(member), sale.operation_id, None, amount));
            }
            Step::RefundSale { pick, amount } => {
                let index = pick % sales.len().max(1);
                let Some((member, operation, referrer, left)) = sales.get(index).copied() else {
                    continue;
                };
                let key = world.key();
                if let Ok(refund) = world
                    .services
                    .refund_sale(
                        identity.grant().expect("grant"),
                        key,
                        operation,
                        SaleRefundInput { amount_minor: amount },
                    )
                    .await
                {
                    if let Some(member) = member {
                        held[member] -= refund.value.points.clawed_back;
                    }
                    let left = left - refund.value.amount_minor;
                    sales[index].3 = left;
                    // The referral bonus goes back exactly when a referred first sale is refunded whole.
                    match (referrer.filter(|_| left == 0), refund.value.referral) {
                        (Some(referrer), Some(referral)) => {
                            prop_assert_eq!(referral.customer_id, members[referrer]);
                            prop_assert_eq!(referral.points.clawed_back + referral.points.shortfall, 150);
                            held[referrer] -= referral.points.clawed_back;
                        }
                        (None, None) => {}
                        (expected, found) => prop_assert!(
                            false,
                            "refund of sale {} ({} left): referral {:?} expected for {:?}",
                            operation,
                            left,
                            found,
                            expected
                        ),
                    }
                }
            }
            Step::Order { member, quantity } => {
                let key = world.key();
                if let Ok(order) = world
                    .services
                    .place_order(
                        identity.grant().expect("grant"),
                        key,
                        OrderInput {
                            customer_id: members[member],
                            reward_id: reward.id,
                            quantity: Some(quantity),
                            cash_method: None,
                        },
                    )
                    .await
                {
                    held[member] -= order.value.points;
                    orders.push((member, order.value.id, order.value.points));
                }
            }
            Step::Cancel { pick } => {
                let Some((member, order, points)) = orders.get(pick % orders.len().max(1)).copied() else {
                    continue;
                };
                let key = world.key();
                if world
                    .services
                    .set_order_status(
                        identity.grant().expect("grant"),
                        key,
                        order,
                        OrderStatusInput { status: "cancelled".into() },
                    )
                    .await
                    .is_ok()
                {
                    held[member] += points;
                }
            }
            Step::Transfer { from, points } => {
                let key = world.key();
                let to = (from + 1) % MEMBERS;
                if world
                    .services
                    .transfer_points(
                        identity.grant().expect("grant"),
                        key,
                        members[from],
                        PointsTransferInput { to_customer_id: members[to], points },
                    )
                    .await
                    .is_ok()
                {
                    held[from] -= points;
                    held[to] += points;
                }
            }
            Step::MergeIn { member, amount, order } => {
                let duplicate = world.customer().await;
                let sale = world.sale(duplicate, amount).await;
                let mut brought = sale.points.points;
                // Refunds of the duplicate's sale take points from whoever holds them now.
                sales.push((Some(member), sale.operation_id, None, amount));
                if order {
                    let key = world.key();
                    if let Ok(placed) = world
                        .services
                        .place_order(
                            identity.grant().expect("grant"),
                            key,
                            OrderInput {
                                customer_id: duplicate,
                                reward_id: reward.id,
                                quantity: Some(1),
                                cash_method: None,
                            },
                        )
                        .await
                    {
                        brought -= placed.value.points;
                        orders.push((member, placed.value.id, placed.value.points));
                    }
                }
                let merged = world
                    .services
                    .merge_customers(identity.grant().expect("grant"), members[member], duplicate)
                    .await
                    .expect("merge");
                prop_assert_eq!(merged.loyalty.points, brought);
                prop_assert_eq!(world.points(duplicate).await, (0, 0));
                held[member] += brought;
            }
            Step::Referred { referrer, amount } => {
                let newcomer = world.customer().await;
                let key = world.key();
                world
                    .services
                    .enrol_member(
                        identity.grant().expect("grant"),
                        key,
                        newcomer,
                        EnrolmentInput { referred_by: Some(members[referrer]), store_id: None },
                    )
                    .await
                    .expect("enrolment");
                let owed_before = world.owed(members[referrer]).await;
                let sale = world.sale(newcomer, amount).await;
                let bonus =
                    sale.points.referral.expect("a first sale of a referred member pays the referrer");
                prop_assert_eq!((bonus.customer_id, bonus.points), (members[referrer], 150));
                // What the referrer owed is paid off first.
                held[referrer] += bonus.points - (owed_before - world.owed(members[referrer]).await);
                sales.push((None, sale.operation_id, Some(referrer), amount));
            }
            Step::Adjust { member, points } => {
                let owed_before = world.owed(members[member]).await;
                let key = world.key();
                let adjusted = world
                    .services
                    .adjust_points(
                        identity.grant().expect("grant"),
                        key,
                        members[member],
                        PointsAdjustmentInput {
                            points,
                            reason: "property".into(),
                            expires_at: None,
                            store_id: None,
                        },
                    )
                    .await;
                match adjusted {
                    Ok(done) => {
                        prop_assert_eq!(done.value.points, points);
                        // A credit pays off what is owed first; a debit takes what it says.
                        held[member] += points - (owed_before - world.owed(members[member]).await);
                    }
                    // Only a debit of more than the member can spend is refused.
                    Err(error) => prop_assert!(
                        points < 0 && held[member] < -points,
                        "adjustment of {} refused with {} held: {}",
                        points,
                        held[member],
                        error
                    ),
                }
            }
            Step::Advance { days } => {
                world.clock.advance_ms(days * 86_400_000);
                let expired = world.services.expire_points().await.expect("expiry");
                let _ = expired;
                // The model cannot know which points expired; re-read what is held.
                for (index, member) in members.iter().enumerate() {
                    held[index] = world.points(*member).await.0;
                }
            }
        }
        for (index, member) in members.iter().enumerate() {
            let (balance, lots) = world.points(*member).await;
            prop_assert_eq!(balance, lots, "balance and lots of member {} differ", member);
            prop_assert_eq!(
                balance,
                held[index],
                "member {} holds {} instead of {}",
                member,
                balance,
                held[index]
            );
            prop_assert!(balance >= 0);
        }
    }
    let now_ms = world.services.now_ms();
    for member in members {
        let lots =
            world.services.member_lots(identity.grant().expect("grant"), member, true).await.expect("lots");
        for lot in lots.iter().filter(|lot| lot.points_remaining > 0) {
            let expires = lot
                .expires_at
                .as_deref()
                .map(|at| at.parse::<jiff::Timestamp>().expect("time").as_millisecond());
            // Points given back to an already-expired lot wait for the next run of the job.
            if expires.is_some_and(|at| at <= now_ms) {
                world.services.expire_points().await.expect("expiry");
            }
        }
        let lots =
            world.services.member_lots(identity.grant().expect("grant"), member, true).await.expect("lots");
        for lot in &lots {
            let expires = lot
                .expires_at
                .as_deref()
                .map(|at| at.parse::<jiff::Timestamp>().expect("time").as_millisecond());
            prop_assert!(
                !(expires.is_some_and(|at| at <= now_ms) && lot.points_remaining > 0),
                "lot {} kept points past expiry",
                lot.id
            );
        }
    }
    let verification = world.services.verify_ledger(identity.grant().expect("grant")).await.expect("verify");
    prop_assert!(verification.ok, "{:?}", verification);
    Ok(())
}

#[test]
fn random_sequences_of_points_operations_keep_lots_and_balances_in_step() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let world = std::cell::RefCell::new(runtime.block_on(World::open()));
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(24);
    let mut runner =
        TestRunner::new(ProptestConfig { cases, max_shrink_iters: 100, ..ProptestConfig::default() });
    let result = runner.run(&proptest::collection::vec(step(), 1..30), |steps| {
        runtime.block_on(run_case(&mut world.borrow_mut(), steps))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
