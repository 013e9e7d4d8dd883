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
async fn seed_cards(services: &Services, count: u64, seed: u64) -> Result<(), Failure> {
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
    let mut issued = 0_u64;
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
        issued += 1;
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
        "  cards: {issued} issued with top-ups and payments in {:.1} s",
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
        seed_cards(&services, size.customers.min(DEMO_CARDS_MAX), size.seed).await?;
    } else {
        println!("the database already has customers; keeping them (use --fresh to start over)");
    }
    let stores = services.list_stores(&operator()).await?;
    let admin = demo_login(&services, "admin", "admin", None).await?;
    let clerk = demo_login(&services, "clerk", "clerk", stores.first().map(|store| store.id)).await?;
    let address = services.settings().listen.clone();
    let banner = format!(
        "\ndemo logins (passwords are new on every start):\n  admin  {admin}\n  clerk  {clerk}  (store {})\n\ntry:\n  curl -s -c jar -H 'content-type: application/json' -d '{{\"username\":\"admin\",\"password\":\"{admin}\"}}' http://{address}/api/v1/auth/login\n  curl -s -b jar 'http://{address}/api/v1/customers?limit=3'\n",
        stores.first().map_or_else(|| "-".to_owned(), |store| store.code.clone())
    );
    if args.no_serve {
        println!("{banner}");
        return Ok(());
    }
    serve(services, Some(banner)).await
}
