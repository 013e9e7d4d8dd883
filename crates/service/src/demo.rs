//! Demo data: a seeded, realistic chain of stores with customers and their purchases —
//! Chinese names, cities and stores, birthdays, consents, skewed purchase frequency and
//! spend by category. The same seed and sizes always give the same files. It is the data of
//! `cardcrm demo` and of every benchmark.

use std::{collections::HashMap, io::Write};

use jiff::{Timestamp, ToSpan, civil::Date, tz::TimeZone};

use crate::{error::ServiceError, random::SeededRng};

#[derive(Debug, Clone)]
pub struct DemoSize {
    pub customers: u64,
    pub transactions: u64,
    pub seed: u64,
    /// Share of customers registered twice (same phone through another channel), to give
    /// the duplicate finder something to find.
    pub duplicate_rate: f64,
    /// Write the transactions in time order (as a till's export is) instead of in the order
    /// drawn: the same transactions, held in memory (about 40 bytes each) and sorted.
    pub in_time_order: bool,
}

impl Default for DemoSize {
    fn default() -> Self {
        Self {
            customers: 2_000,
            transactions: 40_000,
            seed: 20_261_122,
            duplicate_rate: 0.0,
            in_time_order: false,
        }
    }
}

/// A store of the demo chain.
#[derive(Debug, Clone)]
pub struct DemoStore {
    pub code: String,
    pub name: String,
    pub city: &'static str,
    pub province: &'static str,
    pub region_code: &'static str,
    pub address: String,
}

const CITIES: &[(&str, &str, &str, &str, &[&str])] = &[
    ("SH", "上海", "上海市", "310104", &["南京西路", "淮海中路", "陆家嘴", "五角场", "徐家汇"]),
    ("BJ", "北京", "北京市", "110105", &["三里屯", "国贸", "中关村", "西单", "望京"]),
    ("GZ", "广州", "广东省", "440106", &["天河城", "北京路", "珠江新城"]),
    ("SZ", "深圳", "广东省", "440304", &["华强北", "海岸城", "万象城"]),
    ("HZ", "杭州", "浙江省", "330106", &["湖滨", "武林广场"]),
    ("CD", "成都", "四川省", "510104", &["春熙路", "太古里"]),
    ("WH", "武汉", "湖北省", "420106", &["江汉路", "光谷"]),
    ("NJ", "南京", "江苏省", "320106", &["新街口"]),
    ("XA", "西安", "陕西省", "610113", &["小寨"]),
    ("CQ", "重庆", "重庆市", "500103", &["解放碑", "观音桥"]),
];

const SURNAMES: &[(&str, f64)] = &[
    ("王", 7.1),
    ("李", 7.0),
    ("张", 6.7),
    ("刘", 5.4),
    ("陈", 4.5),
    ("杨", 3.1),
    ("黄", 2.2),
    ("赵", 2.0),
    ("吴", 1.9),
    ("周", 1.9),
    ("徐", 1.5),
    ("孙", 1.5),
    ("马", 1.4),
    ("朱", 1.3),
    ("胡", 1.3),
    ("郭", 1.1),
    ("何", 1.1),
    ("高", 1.0),
    ("林", 1.0),
    ("罗", 0.9),
    ("郑", 0.9),
    ("梁", 0.9),
    ("谢", 0.8),
    ("宋", 0.7),
    ("唐", 0.7),
    ("许", 0.6),
    ("韩", 0.6),
    ("冯", 0.6),
    ("邓", 0.6),
    ("曹", 0.5),
    ("彭", 0.5),
    ("曾", 0.5),
    ("肖", 0.5),
    ("田", 0.5),
    ("董", 0.5),
    ("欧阳", 0.1),
];
const GIVEN_MALE: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞", "鑫",
    "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "晨", "博", "文", "志",
    "建", "国",
];
const GIVEN_FEMALE: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "婷", "雪", "慧", "莹", "玲", "燕", "萍", "红", "颖",
    "琳", "欣", "悦", "佳", "怡", "蕾", "晴", "洁", "倩", "璐", "瑶", "雨", "梦", "思", "诗", "涵", "月",
    "小", "美",
];
const OCCUPATIONS: &[&str] = &[
    "教师",
    "工程师",
    "医生",
    "护士",
    "会计",
    "销售",
    "设计师",
    "程序员",
    "公务员",
    "学生",
    "自由职业",
    "企业主",
    "律师",
    "厨师",
    "司机",
    "退休",
];
const INCOME_BANDS: &[(&str, f64)] =
    &[("below_5k", 2.0), ("5k_10k", 3.5), ("10k_20k", 2.8), ("20k_50k", 1.2), ("above_50k", 0.3)];
const CHANNELS: &[(&str, f64)] =
    &[("store", 5.0), ("wechat", 2.0), ("app", 1.5), ("online_shop", 1.0), ("partner", 0.5)];
const TAGS: &[&str] = &[
    "咖啡控",
    "亲子",
    "学生",
    "夜猫子",
    "健身",
    "美妆达人",
    "吃货",
    "数码迷",
    "宠物",
    "周末购物",
    "高净值",
    "价格敏感",
];
const EMAIL_DOMAINS: &[&str] = &["qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com"];
const STREETS: &[&str] =
    &["人民路", "解放路", "中山路", "建设路", "和平路", "长江路", "文化路", "新华路", "青年路", "花园路"];
/// Category, weight, median spend in fen, spread.
const CATEGORIES: &[(&str, f64, f64, f64)] = &[
    ("餐饮", 3.0, 6_800.0, 0.5),
    ("咖啡茶饮", 3.5, 3_200.0, 0.3),
    ("生鲜", 2.0, 5_500.0, 0.6),
    ("服装", 1.2, 29_900.0, 0.6),
    ("美妆", 1.0, 21_900.0, 0.5),
    ("母婴", 0.7, 15_800.0, 0.6),
    ("家居", 0.6, 39_900.0, 0.7),
    ("数码", 0.3, 159_900.0, 0.6),
    ("运动", 0.5, 45_900.0, 0.6),
    ("图书", 0.4, 6_900.0, 0.4),
];

/// The stores of the demo chain: one or more per city.
pub fn stores() -> Vec<DemoStore> {
    let mut out = Vec::new();
    for (prefix, city, province, region, districts) in CITIES {
        for (index, district) in districts.iter().enumerate() {
            out.push(DemoStore {
                code: format!("{prefix}{:03}", index + 1),
                name: format!("{city}{district}店"),
                city,
                province,
                region_code: region,
                address: format!("{province}{city}{district}{}号", 100 + index * 17),
            });
        }
    }
    out
}

/// The stores as an import file (`cardcrm import stores`).
pub fn write_stores(out: &mut impl Write) -> Result<(), ServiceError> {
    let mut writer = csv::Writer::from_writer(out);
    let io = |error: csv::Error| ServiceError::Config(format!("writing demo stores: {error}"));
    writer.write_record(["code", "name", "city", "address", "time_zone"]).map_err(io)?;
    for store in stores() {
        writer
            .write_record([store.code.as_str(), &store.name, store.city, &store.address, "Asia/Shanghai"])
            .map_err(io)?;
    }
    writer.flush().map_err(|error| ServiceError::Config(format!("writing demo stores: {error}")))
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

fn resident_id(region: &str, birthday: Date, sequence: u32, male: bool) -> String {
    // Odd 17th digit for men, even for women.
    let sequence = (sequence % 500) * 2 + u32::from(male);
    let body =
        format!("{region}{:04}{:02}{:02}{sequence:03}", birthday.year(), birthday.month(), birthday.day());
    let sum: u32 = body.bytes().zip(ID_WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// What the transaction generator needs to know of each customer.
struct Shopper {
    home_store: u16,
    /// Relative purchase frequency (heavy-tailed).
    activity: f64,
    /// Relative spend level.
    spend: f64,
    /// Purchases happen between these days (0 = oldest day of the window).
    active_from_day: u32,
    active_until_day: u32,
    favourite_category: u8,
}

/// Writes `customers.csv` and `transactions.csv` for the given size. Purchases fall in the
/// two years before `now`; birthdays are bounded by `now` too.
pub fn write_demo(
    size: &DemoSize,
    now: Timestamp,
    customers_out: &mut impl Write,
    transactions_out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<(), ServiceError> {
    let io = |error: csv::Error| ServiceError::Config(format!("writing demo data: {error}"));
    let zone = TimeZone::get("Asia/Shanghai")
        .map_err(|_| ServiceError::Config("the time zone database lacks Asia/Shanghai".into()))?;
    let today = now.to_zoned(zone.clone()).date();
    let stores = stores();
    let mut rng = SeededRng::new(size.seed);
    let surname_weights: Vec<f64> = SURNAMES.iter().map(|(_, weight)| *weight).collect();
    let income_weights: Vec<f64> = INCOME_BANDS.iter().map(|(_, weight)| *weight).collect();
    let channel_weights: Vec<f64> = CHANNELS.iter().map(|(_, weight)| *weight).collect();
    let category_weights: Vec<f64> = CATEGORIES.iter().map(|(_, weight, _, _)| *weight).collect();
    let window_days: u32 = 730;
    let mut id_sequences: HashMap<(&str, Date), u32> = HashMap::new();
    let mut shoppers = Vec::with_capacity(size.customers as usize);
    let mut previous_phone = String::new();

    let mut customers = csv::Writer::from_writer(customers_out);
    customers
        .write_record([
            "external_id",
            "name",
            "gender",
            "birthday",
            "phone",
            "email",
            "id_number",
            "occupation",
            "income_band",
            "province",
            "city",
            "address",
            "source_channel",
            "tags",
            "store_code",
            "consent_sms",
            "consent_email",
            "consent_wechat",
        ])
        .map_err(io)?;
    for index in 0..size.customers {
        let male = rng.chance(0.48);
        let surname = SURNAMES[rng.weighted(&surname_weights)].0;
        let given_pool = if male { GIVEN_MALE } else { GIVEN_FEMALE };
        let mut name = format!("{surname}{}", rng.pick(given_pool));
        if rng.chance(0.7) {
            let given = rng.pick(given_pool);
            name.push_str(given);
        }
        let age = (36.0 + 11.0 * rng.normal()).clamp(18.0, 80.0) as i64;
        let birthday = today
            .checked_sub((age * 365 + rng.between(0, 364)).days())
            .map_err(|_| ServiceError::Config("demo birthday out of range".into()))?;
        let home_store = rng.below(stores.len() as u64) as u16;
        let store = &stores[home_store as usize];
        let duplicate = index > 0 && rng.chance(size.duplicate_rate);
        let phone = if duplicate {
            previous_phone.clone()
        } else {
            let prefixes =
                ["138", "139", "136", "137", "150", "151", "158", "159", "186", "187", "188", "177", "199"];
            let digits = (index.wrapping_mul(48_271).wrapping_add(12_345_679)) % 100_000_000;
            format!("{}{digits:08}", rng.pick(&prefixes))
        };
        previous_phone.clone_from(&phone);
        let email = if rng.chance(0.4) {
            format!("member{index}@{}", rng.pick(EMAIL_DOMAINS))
        } else {
            String::new()
        };
        let id_number = if rng.chance(0.3) && !duplicate {
            let sequence = id_sequences.entry((store.region_code, birthday)).or_insert(0);
            *sequence += 1;
            resident_id(store.region_code, birthday, *sequence, male)
        } else {
            String::new()
        };
        let tag_count = rng.weighted(&[5.0, 3.0, 1.5, 0.5]);
        let mut tags: Vec<&str> = (0..tag_count).map(|_| *rng.pick(TAGS)).collect();
        tags.sort_unstable();
        tags.dedup();
        let channel = if duplicate { "wechat" } else { CHANNELS[rng.weighted(&channel_weights)].0 };
        let yes_no = |yes: bool| if yes { "yes" } else { "no" };
        customers
            .write_record([
                format!("M{index:08}").as_str(),
                &name,
                if male { "male" } else { "female" },
                &birthday.to_string(),
                &phone,
                &email,
                &id_number,
                *rng.pick(OCCUPATIONS),
                INCOME_BANDS[rng.weighted(&income_weights)].0,
                store.province,
                store.city,
                &format!("{}{}{}号", store.city, rng.pick(STREETS), rng.between(1, 999)),
                channel,
                &tags.join(","),
                &store.code,
                yes_no(rng.chance(0.6)),
                yes_no(!email.is_empty() && rng.chance(0.5)),
                yes_no(rng.chance(0.45)),
            ])
            .map_err(io)?;
        // Heavy-tailed frequency and spend: a few customers buy often and a lot.
        let activity = rng.log_normal(1.0, 1.1);
        let spend = rng.log_normal(1.0, 0.45);
        let start = rng.below(u64::from(window_days) * 2 / 3) as u32;
        let churned = rng.chance(0.25);
        let until =
            if churned { start + rng.below(u64::from(window_days - start)) as u32 } else { window_days };
        shoppers.push(Shopper {
            home_store,
            activity,
            spend,
            active_from_day: start,
            active_until_day: until.max(start + 1),
            favourite_category: rng.weighted(&category_weights) as u8,
        });
        if index % 10_000 == 0 {
            progress(index);
        }
    }
    customers.flush().map_err(|error| ServiceError::Config(format!("writing demo data: {error}")))?;

    let mut transactions = csv::Writer::from_writer(transactions_out);
    transactions
        .write_record([
            "external_id",
            "customer_external_id",
            "store_code",
            "occurred_at",
            "amount",
            "category",
            "channel",
        ])
        .map_err(io)?;
    if shoppers.is_empty() {
        return transactions
            .flush()
            .map_err(|error| ServiceError::Config(format!("writing demo data: {error}")));
    }
    let mut cumulative = Vec::with_capacity(shoppers.len());
    let mut total = 0.0;
    for shopper in &shoppers {
        total += shopper.activity;
        cumulative.push(total);
    }
    let window_start = today
        .checked_sub(i64::from(window_days).days())
        .map_err(|_| ServiceError::Config("demo window out of range".into()))?;
    let now_ms = now.as_millisecond();
    /// One drawn transaction, compact so that a time-ordered file can hold them all.
    struct Drawn {
        moment_ms: i64,
        amount_minor: i64,
        who: u32,
        store: u16,
        category: u8,
        channel: u8,
    }
    let mut draw = || {
        let target = rng.next_f64() * total;
        let who = cumulative.partition_point(|sum| *sum <= target).min(shoppers.len() - 1);
        let shopper = &shoppers[who];
        let day = shopper.active_from_day
            + rng.below(u64::from(shopper.active_until_day - shopper.active_from_day)) as u32;
        let date = window_start.checked_add(i64::from(day).days()).unwrap_or(today);
        let hour = (10.0 + 12.0 * rng.next_f64().powf(0.8)) as i64;
        let moment_ms = date
            .at(hour.min(22) as i8, rng.between(0, 59) as i8, rng.between(0, 59) as i8, 0)
            .to_zoned(zone.clone())
            .map(|zoned| zoned.timestamp().as_millisecond())
            .unwrap_or(now_ms)
            .min(now_ms - 60_000);
        let category = if rng.chance(0.45) {
            shopper.favourite_category as usize
        } else {
            rng.weighted(&category_weights)
        };
        let (_, _, median, spread) = CATEGORIES[category];
        let amount_minor = (rng.log_normal(median * shopper.spend, spread)).clamp(100.0, 5_000_000.0) as i64;
        let store = if rng.chance(0.85) {
            shopper.home_store as usize
        } else {
            rng.below(stores.len() as u64) as usize
        };
        let channel = rng.weighted(&[7.0, 2.0, 1.0]) as u8;
        Drawn {
            moment_ms,
            amount_minor,
            who: who as u32,
            store: store as u16,
            category: category as u8,
            channel,
        }
    };
    let mut write = |index: u64, drawn: &Drawn| -> Result<(), ServiceError> {
        let local = Timestamp::from_millisecond(drawn.moment_ms)
            .map(|at| at.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let channel = match drawn.channel {
            0 => "store",
            1 => "online_shop",
            _ => "app",
        };
        transactions
            .write_record([
                format!("T{index:010}").as_str(),
                &format!("M{:08}", drawn.who),
                &stores[usize::from(drawn.store)].code,
                &local,
                &format!("{}.{:02}", drawn.amount_minor / 100, drawn.amount_minor % 100),
                CATEGORIES[usize::from(drawn.category)].0,
                channel,
            ])
            .map_err(io)?;
        if index.is_multiple_of(100_000) {
            progress(size.customers + index);
        }
        Ok(())
    };
    if size.in_time_order {
        let mut drawn: Vec<Drawn> = (0..size.transactions).map(|_| draw()).collect();
        drawn.sort_by_key(|drawn| drawn.moment_ms);
        for (index, drawn) in drawn.iter().enumerate() {
            write(index as u64, drawn)?;
        }
    } else {
        for index in 0..size.transactions {
            let drawn = draw();
            write(index, &drawn)?;
        }
    }
    transactions.flush().map_err(|error| ServiceError::Config(format!("writing demo data: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(size: &DemoSize) -> (String, String) {
        let now: Timestamp = "2026-11-22T04:00:00Z".parse().unwrap();
        let (mut customers, mut transactions) = (Vec::new(), Vec::new());
        write_demo(size, now, &mut customers, &mut transactions, |_| {}).unwrap();
        (String::from_utf8(customers).unwrap(), String::from_utf8(transactions).unwrap())
    }

    #[test]
    fn same_seed_same_files_and_requested_sizes() {
        let size = DemoSize { customers: 300, transactions: 2_000, ..DemoSize::default() };
        let (customers, transactions) = generate(&size);
        assert_eq!((customers.clone(), transactions.clone()), generate(&size));
        assert_eq!(customers.lines().count(), 301);
        assert_eq!(transactions.lines().count(), 2_001);
        let other = generate(&DemoSize { seed: 7, ..size });
        assert_ne!(other.0, customers);
    }

    #[test]
    fn generated_values_pass_our_own_validation() {
        let size = DemoSize { customers: 500, transactions: 10, ..DemoSize::default() };
        let (customers, _) = generate(&size);
        let mut reader = csv::Reader::from_reader(customers.as_bytes());
        let mut phones = std::collections::HashSet::new();
        for record in reader.records() {
            let record = record.unwrap();
            let phone = cardcrm_domain::phone::Phone::parse(&record[4]).unwrap();
            assert!(phones.insert(phone), "phones are unique without duplicates");
            if !record[6].is_empty() {
                let id = cardcrm_domain::id_number::IdNumber::parse(
                    cardcrm_domain::id_number::IdKind::ResidentId,
                    &record[6],
                )
                .unwrap();
                assert_eq!(id.birth_date().unwrap().to_string(), &record[3]);
            }
        }
    }

    #[test]
    fn purchase_frequency_is_skewed() {
        let size = DemoSize { customers: 1_000, transactions: 50_000, ..DemoSize::default() };
        let (_, transactions) = generate(&size);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for line in transactions.lines().skip(1) {
            *counts.entry(line.split(',').nth(1).unwrap().to_owned()).or_default() += 1;
        }
        let mut sorted: Vec<usize> = counts.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top_decile: usize = sorted.iter().take(100).sum();
        assert!(
            top_decile * 100 / 50_000 > 25,
            "the top 10% of customers make over a quarter of purchases ({top_decile})"
        );
    }
}
