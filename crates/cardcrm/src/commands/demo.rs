//! `cardcrm demo`: a database full of generated data, ready to explore; and
//! `cardcrm generate`: the same data as files, for benchmarks.

use std::{
    io::BufWriter,
    path::{Path, PathBuf},
    sync::Arc,
};

use cardcrm_service::{
    Services,
    demo::{DemoSize, write_demo, write_stores},
    import::{DuplicatePolicy, ImportOptions, ImportProgress, ImportReport, ImportSource, RejectSink},
    staff::NewStaff,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{CommandResult, Failure, init_logging, load_settings, open, operator, serve::serve};
use crate::GlobalArgs;

#[derive(Debug, Args)]
pub struct SizeArgs {
    /// Customers to generate.
    #[arg(long, default_value_t = 5_000)]
    pub customers: u64,
    /// Purchase transactions to generate.
    #[arg(long, default_value_t = 100_000)]
    pub transactions: u64,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 20_261_122)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub size: SizeArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Delete the demo's SQLite database first and start over.
    #[arg(long)]
    pub fresh: bool,
    /// Load the data and print the logins, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub size: SizeArgs,
    /// Directory to write stores.csv, customers.csv and transactions.csv into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Share of customers registered twice with the same phone (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_rate: f64,
    /// Write the transactions in time order (as a till's export is), not in the order drawn.
    #[arg(long)]
    pub in_time_order: bool,
}

fn io_failure(path: &Path, error: std::io::Error) -> Failure {
    Failure::other(format!("{}: {error}", path.display()))
}

/// Writes the three demo files into `directory`, with a progress bar.
fn write_files(directory: &Path, size: &DemoSize) -> Result<(), Failure> {
    std::fs::create_dir_all(directory).map_err(|error| io_failure(directory, error))?;
    let create = |name: &str| -> Result<BufWriter<std::fs::File>, Failure> {
        let path = directory.join(name);
        std::fs::File::create(&path)
            .map(|file| BufWriter::with_capacity(1 << 20, file))
            .map_err(|error| io_failure(&path, error))
    };
    write_stores(&mut create("stores.csv")?)?;
    let bar = ProgressBar::new(size.customers + size.transactions);
    bar.set_style(
        ProgressStyle::with_template("generating {bar:32} {pos}/{len} rows {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut customers = create("customers.csv")?;
    let mut transactions = create("transactions.csv")?;
    write_demo(size, jiff::Timestamp::now(), &mut customers, &mut transactions, |done| {
        bar.set_position(done)
    })?;
    use std::io::Write;
    customers.flush().map_err(|error| io_failure(directory, error))?;
    transactions.flush().map_err(|error| io_failure(directory, error))?;
    bar.finish_and_clear();
    Ok(())
}

pub fn generate(_global: &GlobalArgs, args: GenerateArgs) -> CommandResult {
    if !(0.0..=1.0).contains(&args.duplicate_rate) {
        return Err(Failure::input("--duplicate-rate is a share between 0 and 1"));
    }
    let size = DemoSize {
        customers: args.size.customers,
        transactions: args.size.transactions,
        seed: args.size.seed,
        duplicate_rate: args.duplicate_rate,
        in_time_order: args.in_time_order,
    };
    write_files(&args.out, &size)?;
    println!(
        "wrote {}/stores.csv, customers.csv ({} rows) and transactions.csv ({} rows)",
        args.out.display(),
        size.customers,
        size.transactions
    );
    Ok(())
}

async fn import(
    services: &Services,
    kind: &str,
    path: PathBuf,
    policy: DuplicatePolicy,
) -> Result<ImportReport, Failure> {
    let identity = operator();
    let options = ImportOptions {
        file_name: path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        on_duplicate: policy,
        ..ImportOptions::default()
    };
    let progress = Arc::new(ImportProgress::default());
    let rejects = RejectSink::memory(0);
    let source = ImportSource::Path(path);
    let report = match kind {
        "stores" => services.import_stores(identity.grant()?, options, source, progress, rejects).await?,
        "customers" => {
            services.import_customers(identity.grant()?, options, source, progress, rejects).await?
        }
        _ => services.import_transactions(identity.grant()?, options, source, progress, rejects).await?,
    };
    println!("  {kind}: {} rows in {:.1} s", report.rows_inserted, report.elapsed_ms as f64 / 1000.0);
    Ok(report)
}

/// Most customers the demo gives a card.
const DEMO_CARDS_MAX: u64 = 400;

/// Card products (a membership card and a stored-value card with 充500送30 and 充1000送100),
/// one card for each of the first `count` customers, top-ups on most stored-value cards and
/// a few payments, all through the same services as the API.
async fn seed_cards(services: &Services, count: u64, seed: u64) -> Result<Vec<(i64, i64)>, Failure> {
    use cardcrm_domain::ledger::BonusRule;
    use cardcrm_service::{
        cards::{IssueCardInput, ProductInput},
        ledger::{IdempotencyKey, SpendInput, TopUpInput},
    };
    let started = std::time::Instant::now();
    let identity = operator();
    for (code, name, kind, rules) in [
        ("MEMBER", "会员卡", "membership", vec![]),
        (
            "VALUE",
            "储值卡",
            "stored_value",
            vec![
                BonusRule { min_top_up_minor: 50_000, bonus_minor: 3_000 },
                BonusRule { min_top_up_minor: 100_000, bonus_minor: 10_000 },
            ],
        ),
    ] {
        let input = ProductInput {
            code: Some(code.into()),
            name: Some(name.into()),
            kind: Some(kind.into()),
            bonus_rules: Some(rules),
            ..ProductInput::default()
        };
        services.create_product(identity.grant()?, input).await?;
    }
    let key =
        |text: String| IdempotencyKey::parse(&text).map_err(|error| Failure::other(error.message.clone()));
    let mut issued = Vec::new();
    for customer_id in 1..=count as i64 {
        let mix = (customer_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        let stored_value = !mix.is_multiple_of(3);
        let input = IssueCardInput {
            customer_id,
            product: if stored_value { "VALUE" } else { "MEMBER" }.into(),
            form: Some(if mix.is_multiple_of(5) { "virtual" } else { "physical" }.into()),
            store_id: None,
            number: None,
            pin: None,
            activate: Some(true),
        };
        // Customers merged away during the import have no card.
        let Ok(card) = services.issue_card(identity.grant()?, input).await else { continue };
        issued.push((customer_id, card.card.id));
        if !stored_value {
            continue;
        }
        let amount = [20_000, 50_000, 100_000, 200_000][(mix >> 8) as usize % 4];
        let top_up = TopUpInput {
            amount_minor: amount,
            payment_method: "wechat_pay".into(),
            store_id: None,
            reference: None,
            currency: None,
        };
        services
            .top_up(identity.grant()?, key(format!("demo-load-{customer_id}"))?, card.card.id, top_up)
            .await?;
        let spend = SpendInput {
            amount_minor: 1_000 + (mix >> 16) as i64 % 15_000,
            store_id: None,
            pin: None,
            reference: None,
            currency: None,
        };
        services
            .spend(identity.grant()?, key(format!("demo-pay-{customer_id}"))?, card.card.id, spend)
            .await?;
    }
    println!(
        "  cards: {} issued with top-ups and payments in {:.1} s",
        issued.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(issued)
}

/// Checkouts per card holder in the loyalty part of the demo.
const DEMO_CHECKOUTS_PER_MEMBER: u64 = 3;

/// The loyalty programme at work, through the same services as the API: a programme version
/// with sign-up, first-purchase and referral bonuses; every card holder enrolled (one in four
/// referred by the member before them); two coupon templates, one issued to every member;
/// checkouts on the cards that earn points, some paying with a coupon or with points and a
/// few big enough to reach silver or gold at once; and a points mall with orders.
async fn seed_loyalty(services: &Services, holders: &[(i64, i64)], seed: u64) -> Result<(), Failure> {
    use cardcrm_service::{
        checkout::{CheckoutInput, CheckoutLine},
        ledger::IdempotencyKey,
        loyalty::{EnrolmentInput, ProgrammeInput},
        rewards::{IssueInput, OrderInput, RewardInput, TemplateInput},
    };
    let started = std::time::Instant::now();
    let identity = operator();
    let key =
        |text: String| IdempotencyKey::parse(&text).map_err(|error| Failure::other(error.message.clone()));
    let now = jiff::Timestamp::from_millisecond(services.now_ms())
        .map_err(|error| Failure::other(error.to_string()))?;
    services
        .create_programme(
            identity.grant()?,
            ProgrammeInput {
                effective_from: now.to_string(),
                rules: serde_json::json!({
                    "signup_bonus_points": 100, "first_purchase_bonus_points": 50, "referral_bonus_points": 200,
                    "category_multipliers": [{"category": "beauty", "multiplier_pct": 200}],
                }),
                note: Some("demo: sign-up, first-purchase and referral bonuses; double points on beauty".into()),
            },
        )
        .await?;
    for (index, (customer_id, _)) in holders.iter().enumerate() {
        let referred_by = (index % 4 == 3).then(|| holders[index - 1].0);
        let input = EnrolmentInput { referred_by, store_id: None };
        services
            .enrol_member(identity.grant()?, key(format!("demo-enrol-{customer_id}"))?, *customer_id, input)
            .await?;
    }
    let template = |code: &str, name: &str, kind: &str| TemplateInput {
        code: code.into(),
        name: name.into(),
        kind: kind.into(),
        amount_off_minor: 0,
        percent_off_bp: 0,
        cap_minor: None,
        threshold_minor: 0,
        category: None,
        gift_name: None,
        valid_from: None,
        valid_to: None,
        valid_days: Some(90),
        stackable: false,
        per_member_max: Some(1),
        issue_max: None,
    };
    let threshold = services
        .create_coupon_template(
            identity.grant()?,
            TemplateInput {
                amount_off_minor: 2_000,
                threshold_minor: 10_000,
                ..template("SAVE20", "满100减20", "threshold_off")
            },
        )
        .await?;
    let percent = services
        .create_coupon_template(
            identity.grant()?,
            TemplateInput {
                percent_off_bp: 1_000,
                cap_minor: Some(5_000),
                ..template("TENOFF", "九折券（最高减50元）", "percent_off")
            },
        )
        .await?;
    let issued = services
        .issue_coupons(
            identity.grant()?,
            key("demo-coupons-save20".into())?,
            threshold.id,
            IssueInput {
                customer_ids: holders.iter().map(|(customer_id, _)| *customer_id).collect(),
                tier: None,
            },
        )
        .await?
        .value;
    let coupon_of: std::collections::HashMap<i64, String> =
        issued.coupons.iter().map(|coupon| (coupon.customer_id, coupon.code.clone())).collect();
    let categories = ["food", "beauty", "apparel", "home", "electronics"];
    let mut checkouts = 0_u64;
    for (index, (customer_id, card_id)) in holders.iter().enumerate() {
        let mix = (*customer_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        for round in 0..DEMO_CHECKOUTS_PER_MEMBER {
            let draw = mix.rotate_left(round as u32 * 7);
            // One member in twelve buys big once: enough for silver (¥2,000), and one in
            // thirty-six for gold (¥10,000).
            let amount_minor = match (round, index % 36) {
                (0, 0) => 1_000_000 + (draw % 500_000) as i64,
                (0, 12 | 24) => 200_000 + (draw % 300_000) as i64,
                _ => 3_000 + (draw % 25_000) as i64,
            };
            // 满100减20 counts what is left after the tier discount (at most 12% by default).
            let coupon = (round == 1 && index % 5 == 0 && amount_minor >= 12_000)
                .then(|| coupon_of.get(customer_id).cloned())
                .flatten();
            let points = (round == 2 && index % 7 == 0).then_some(50);
            let input = CheckoutInput {
                card_id: Some(*card_id),
                customer_id: None,
                store_id: None,
                lines: vec![CheckoutLine {
                    amount_minor,
                    category: Some(categories[(draw >> 20) as usize % categories.len()].into()),
                    name: None,
                    sku: None,
                    quantity: None,
                }],
                stored_value_minor: None,
                external_method: Some(
                    ["wechat_pay", "alipay", "bank_card", "cash"][(draw >> 24) as usize % 4].into(),
                ),
                pin: None,
                reference: None,
                currency: None,
                coupon_codes: coupon.into_iter().collect(),
                points_to_redeem: points,
            };
            services
                .checkout(identity.grant()?, key(format!("demo-checkout-{customer_id}-{round}"))?, input)
                .await?;
            checkouts += 1;
        }
    }
    let reward = |code: &str, name: &str, kind: &str, points_price: i64| RewardInput {
        code: code.into(),
        name: name.into(),
        kind: kind.into(),
        points_price,
        cash_price_minor: 0,
        coupon_template_id: None,
        stock: Some(100),
        per_member_max: Some(2),
    };
    let coffee =
        services.create_reward(identity.grant()?, reward("COFFEE", "咖啡兑换券", "service", 150)).await?;
    services
        .create_reward(
            identity.grant()?,
            RewardInput {
                cash_price_minor: 1_000,
                stock: Some(50),
                ..reward("TOTE", "帆布袋（积分+10元）", "goods", 400)
            },
        )
        .await?;
    services
        .create_reward(
            identity.grant()?,
            RewardInput {
                coupon_template_id: Some(percent.id),
                stock: None,
                ..reward("TENOFF", "九折券", "coupon", 200)
            },
        )
        .await?;
    let mut orders = 0_u64;
    for (customer_id, _) in holders.iter().step_by(9) {
        if services.member(identity.grant()?, *customer_id).await?.points_spendable < coffee.points_price {
            continue;
        }
        let input =
            OrderInput { customer_id: *customer_id, reward_id: coffee.id, quantity: None, cash_method: None };
        services.place_order(identity.grant()?, key(format!("demo-order-{customer_id}"))?, input).await?;
        orders += 1;
    }
    println!(
        "  loyalty: {} members enrolled, {} coupons issued, {checkouts} checkouts earning points, {orders} mall orders in {:.1} s",
        holders.len(),
        issued.issued,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates the account, or gives an existing one a fresh password; returns the password.
async fn demo_login(
    services: &Services,
    username: &str,
    role: &str,
    store_id: Option<i64>,
) -> Result<String, Failure> {
    let identity = operator();
    let created = match services.find_staff_by_username(username).await? {
        Some(existing) => services.reset_staff_password(identity.grant()?, existing.id, None).await?,
        None => {
            services
                .create_staff(
                    identity.grant()?,
                    NewStaff {
                        username: username.into(),
                        display_name: None,
                        role: role.into(),
                        store_id,
                        password: None,
                    },
                )
                .await?
        }
    };
    created.generated_password.ok_or_else(|| Failure::other("no password was generated"))
}

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> CommandResult {
    let settings = load_settings(global, args.listen.clone())?;
    init_logging(&settings);
    if args.fresh {
        if settings.database_url.is_some() {
            return Err(Failure::input(
                "--fresh only deletes the embedded SQLite database; empty a PostgreSQL database yourself",
            ));
        }
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", settings.database_url()));
            if path.exists() {
                std::fs::remove_file(&path).map_err(|error| io_failure(&path, error))?;
            }
        }
    }
    let directory = settings.data_dir.join("demo");
    let services = open(settings).await?;
    let size = DemoSize {
        customers: args.size.customers,
        transactions: args.size.transactions,
        seed: args.size.seed,
        duplicate_rate: 0.005,
        in_time_order: false,
    };
    if services.customer_count().await? == 0 {
        println!(
            "loading demo data: {} customers, {} transactions (seed {})",
            size.customers, size.transactions, size.seed
        );
        write_files(&directory, &size)?;
        if services.list_stores(&operator()).await?.is_empty() {
            import(&services, "stores", directory.join("stores.csv"), DuplicatePolicy::Error).await?;
        }
        import(&services, "customers", directory.join("customers.csv"), DuplicatePolicy::Create).await?;
        import(&services, "transactions", directory.join("transactions.csv"), DuplicatePolicy::Error).await?;
        let holders = seed_cards(&services, size.customers.min(DEMO_CARDS_MAX), size.seed).await?;
        seed_loyalty(&services, &holders, size.seed).await?;
    } else {
        println!("the database already has customers; keeping them (use --fresh to start over)");
    }
    let stores = services.list_stores(&operator()).await?;
    let admin = demo_login(&services, "admin", "admin", None).await?;
    let clerk = demo_login(&services, "clerk", "clerk", stores.first().map(|store| store.id)).await?;
    let address = services.settings().listen.clone();
    let banner = format!(
        "\ndemo logins (passwords are new on every start):\n  admin  {admin}\n  clerk  {clerk}  (store {})\n\ntry:\n  curl -s -c jar -H 'content-type: application/json' -d '{{\"username\":\"admin\",\"password\":\"{admin}\"}}' http://{address}/api/v1/auth/login\n  curl -s -b jar 'http://{address}/api/v1/customers?limit=3'\n  curl -s -b jar 'http://{address}/api/v1/members/1'\n  curl -s -b jar 'http://{address}/api/v1/members/1/points-history'\n",
        stores.first().map_or_else(|| "-".to_owned(), |store| store.code.clone())
    );
    if args.no_serve {
        println!("{banner}");
        return Ok(());
    }
    serve(services, Some(banner)).await
}
