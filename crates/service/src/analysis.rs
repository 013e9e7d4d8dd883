//! Analyses straight on a purchases file, with no database: `customer_id,timestamp,amount`
//! (optional `category`, `store`; the `customer_external_id,occurred_at,amount` of a
//! transactions import file also read), CSV with a header row. Timestamps are dates
//! (`2026-06-30`), local date-times (`2026-06-30 12:05:00`, in the business's time zone) or
//! instants with an offset; amounts are decimal (`88.50`). One pass, memory per customer.

use std::{collections::HashMap, io::Read};

use cardcrm_analytics::{
    features::{Accumulator, PeriodAccumulator, PeriodUnit},
    history::HistoryAccumulator,
    kpi::{self, KpiAccumulator},
};
use cardcrm_domain::{
    date,
    money::{Currency, parse_amount_minor},
};
use jiff::{Timestamp, civil::Date, tz::TimeZone};

use crate::error::{ServiceError, ServiceResult};

/// Most purchase rows one file may hold.
pub const ANALYSIS_ROWS_MAX: u64 = 200_000_000;
/// Most distinct categories a category analysis takes (one bit each).
pub const CATEGORIES_MAX: usize = cardcrm_analytics::recommend::CATEGORIES_MAX;
/// Most distinct customers one file may hold.
pub const ANALYSIS_CUSTOMERS_MAX: usize = 20_000_000;

/// The purchases of a file, added up per customer up to the analysis day.
#[derive(Debug)]
pub struct PurchaseFile {
    /// Customer ids as written in the file, by customer number.
    pub customer_ids: Vec<String>,
    pub accumulator: Accumulator,
    pub rows: u64,
    /// (customer number, period number, amount in minor units) of every purchase, with
    /// [`Keep::Purchases`]: the period models choose which count (a week unit takes the
    /// analysis day's whole week, as lifetimes does).
    pub purchases: Vec<(u32, i32, i64)>,
    /// The period summaries built while reading, with [`Keep::Periods`] (check
    /// [`PeriodAccumulator::in_order`]: a file not in time order per customer needs
    /// [`Keep::Purchases`] and a sort).
    pub periods: Option<PeriodAccumulator>,
    /// Each customer's standing at the cutoffs asked for with [`Keep::History`], in that
    /// order.
    pub history: Option<HistoryAccumulator>,
    /// With [`Keep::Categories`]: the category names in order of first appearance, and
    /// per customer number a bit set of them (bit i: `category_names[i]`).
    pub category_names: Vec<String>,
    pub customer_categories: Vec<u64>,
    /// With [`Keep::Kpi`]: the months, and the store names by store number.
    pub kpi: Option<KpiAccumulator>,
    pub store_names: Vec<String>,
}

impl PurchaseFile {
    /// The analysis day's number.
    pub fn as_of_day(&self) -> i32 {
        self.accumulator.as_of_day()
    }
}

/// What [`read_purchases`] keeps beside the per-customer totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Totals,
    /// Period summaries in this unit, built as the rows pass (memory per customer).
    Periods(PeriodUnit),
    /// Every purchase, by period of this unit (memory per purchase).
    Purchases(PeriodUnit),
    /// Standings at cutoffs this many days before the analysis day (memory per customer).
    History([i32; 3]),
    /// The set of categories each customer bought up to the analysis day (the `category`
    /// column is then required; at most 64 distinct categories).
    Categories,
    /// Month-by-month KPIs over this many months up to the analysis day's month (the
    /// `store` column is read when present).
    Kpi(usize),
}

/// Days since 1970-01-01 of a local date.
pub fn day_number(date: Date) -> i32 {
    days_from_civil(i32::from(date.year()), i32::from(date.month()), i32::from(date.day()))
}

/// Days since 1970-01-01 of year, month, day in the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`: years counted from March, 400-year eras).
fn days_from_civil(year: i32, month: i32, day: i32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn digits(bytes: &[u8]) -> Option<i32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |value, digit| value * 10 + i32::from(digit - b'0')))
}

/// The day of a plain `YYYY-MM-DD`, or of a local `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]]`
/// without a zone designator: such a moment is local to the business's zone, so its day is
/// its date and no zone arithmetic is needed. `None` for anything else (the general parser
/// decides).
fn plain_local_day(raw: &str) -> Option<i32> {
    let bytes = raw.trim().as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&bytes[..4])?, digits(&bytes[5..7])?, digits(&bytes[8..10])?);
    Date::new(i16::try_from(year).ok()?, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()?;
    let time = &bytes[10..];
    if !time.is_empty() {
        if !(time[0] == b'T' || time[0] == b' ') || time.len() < 6 || time[3] != b':' {
            return None;
        }
        let (hour, minute) = (digits(&time[1..3])?, digits(&time[4..6])?);
        if hour > 23 || minute > 59 {
            return None;
        }
        let rest = &time[6..];
        if !rest.is_empty() {
            if rest.len() < 3 || rest[0] != b':' || digits(&rest[1..3])? > 59 {
                return None;
            }
            let fraction = &rest[3..];
            if !fraction.is_empty()
                && (fraction[0] != b'.' || digits(&fraction[1..]).is_none() || fraction.len() > 10)
            {
                return None;
            }
        }
    }
    Some(days_from_civil(year, month, day))
}

/// The local day number of a timestamp field in `zone`.
fn local_day(raw: &str, zone: &TimeZone) -> Result<i32, String> {
    if let Some(day) = plain_local_day(raw) {
        return Ok(day);
    }
    let moment: Timestamp = date::parse_moment(raw, zone).map_err(|error| error.message)?;
    Ok(day_number(moment.to_zoned(zone.clone()).date()))
}

fn bad(code: &'static str, line: Option<u64>, message: String) -> ServiceError {
    ServiceError::BadFile { code, line, message }
}

/// Reads a purchases file. `progress` is called with the rows read so far every 1,000,000
/// rows. A bad row stops the read with its line number, field and reason.
pub fn read_purchases(
    reader: impl Read,
    zone: &TimeZone,
    as_of: Date,
    currency: Currency,
    keep: Keep,
    mut progress: impl FnMut(u64),
) -> ServiceResult<PurchaseFile> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|error| {
            bad("analysis.unreadable", Some(1), format!("the header row does not read: {error}"))
        })?
        .clone();
    // The analyst's names first, then those of `cardcrm import transactions` files.
    let column = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| headers.iter().position(|header| header.trim().eq_ignore_ascii_case(name)))
    };
    let (Some(customer_column), Some(time_column), Some(amount_column)) = (
        column(&["customer_id", "customer_external_id"]),
        column(&["timestamp", "occurred_at"]),
        column(&["amount"]),
    ) else {
        return Err(bad(
            "analysis.columns_missing",
            Some(1),
            format!(
                "the file needs the columns customer_id, timestamp and amount; it has {}",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let category_column = column(&["category"]);
    let store_column = column(&["store", "store_code"]);
    if keep == Keep::Categories && category_column.is_none() {
        return Err(bad(
            "analysis.columns_missing",
            Some(1),
            "this analysis needs a category column beside customer_id, timestamp and amount".into(),
        ));
    }
    let mut collector = Collector::new(as_of, keep);
    let mut record = csv::ByteRecord::new();
    loop {
        let line = collector.rows + 2;
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                return Err(bad(
                    "analysis.unreadable",
                    Some(line),
                    format!("the row does not read: {error}"),
                ));
            }
        }
        let field = |column: usize, name: &str| {
            std::str::from_utf8(record.get(column).unwrap_or_default())
                .map_err(|_| bad("analysis.row_invalid", Some(line), format!("{name}: it is not UTF-8 text")))
        };
        let customer = field(customer_column, "customer_id")?.trim();
        if customer.is_empty() {
            return Err(bad("analysis.row_invalid", Some(line), "customer_id: it is empty".into()));
        }
        let day = local_day(field(time_column, "timestamp")?, zone)
            .map_err(|message| bad("analysis.row_invalid", Some(line), format!("timestamp: {message}")))?;
        let amount_minor = parse_amount_minor(field(amount_column, "amount")?, currency)
            .map_err(|error| bad("analysis.row_invalid", Some(line), format!("amount: {}", error.message)))?;
        let number = match collector.numbers.get(customer) {
            Some(number) => *number,
            None => collector.new_customer(customer.to_owned(), Some(line))?,
        };
        let category = match (keep, category_column) {
            (Keep::Categories, Some(column)) => Some(field(column, "category")?.trim()),
            _ => None,
        };
        let store = match (keep, store_column) {
            (Keep::Kpi(_), Some(column)) => Some(field(column, "store")?.trim()),
            _ => None,
        };
        collector.add(number, day, amount_minor, category, store, Some(line))?;
        if collector.rows.is_multiple_of(1_000_000) {
            progress(collector.rows);
        }
    }
    progress(collector.rows);
    Ok(collector.finish())
}

/// Builds a [`PurchaseFile`] row by row: the file reader and the database reader feed it.
pub(crate) struct Collector {
    keep: Keep,
    as_of_day: i32,
    numbers: HashMap<String, u32, foldhash::fast::RandomState>,
    customer_ids: Vec<String>,
    accumulator: Accumulator,
    purchases: Vec<(u32, i32, i64)>,
    periods: Option<(PeriodUnit, PeriodAccumulator)>,
    history: Option<HistoryAccumulator>,
    category_names: Vec<String>,
    customer_categories: Vec<u64>,
    kpi: Option<KpiAccumulator>,
    store_numbers: HashMap<String, u32, foldhash::fast::RandomState>,
    store_names: Vec<String>,
    pub(crate) rows: u64,
}

impl Collector {
    pub(crate) fn new(as_of: Date, keep: Keep) -> Self {
        let as_of_day = day_number(as_of);
        Self {
            keep,
            as_of_day,
            numbers: HashMap::default(),
            customer_ids: Vec::new(),
            accumulator: Accumulator::new(as_of_day),
            purchases: Vec::new(),
            periods: match keep {
                Keep::Periods(unit) => Some((unit, PeriodAccumulator::new(unit.period_of_day(as_of_day)))),
                _ => None,
            },
            history: match keep {
                Keep::History(days_back) => {
                    Some(HistoryAccumulator::new(&days_back.map(|back| as_of_day - back)))
                }
                _ => None,
            },
            category_names: Vec::new(),
            customer_categories: Vec::new(),
            kpi: match keep {
                Keep::Kpi(months) => Some(KpiAccumulator::new(as_of_day, months)),
                _ => None,
            },
            store_numbers: HashMap::default(),
            store_names: Vec::new(),
            rows: 0,
        }
    }

    /// Numbers a customer not seen before.
    pub(crate) fn new_customer(&mut self, id: String, line: Option<u64>) -> ServiceResult<u32> {
        if self.customer_ids.len() >= ANALYSIS_CUSTOMERS_MAX {
            return Err(bad(
                "analysis.too_many_customers",
                line,
                format!("at most {ANALYSIS_CUSTOMERS_MAX} customers"),
            ));
        }
        let number = self.customer_ids.len() as u32;
        self.numbers.insert(id.clone(), number);
        self.customer_ids.push(id);
        Ok(number)
    }

    /// Adds one purchase of customer `number` on local day `day`.
    pub(crate) fn add(
        &mut self,
        number: u32,
        day: i32,
        amount_minor: i64,
        category: Option<&str>,
        store: Option<&str>,
        line: Option<u64>,
    ) -> ServiceResult<()> {
        self.rows += 1;
        if self.kpi.is_some() {
            let store = self.store_number(store, line)?;
            if let Some(kpi) = self.kpi.as_mut() {
                kpi.add(number, day, amount_minor, store);
            }
        }
        if self.rows > ANALYSIS_ROWS_MAX {
            return Err(bad("analysis.too_many_rows", line, format!("at most {ANALYSIS_ROWS_MAX} rows")));
        }
        self.accumulator.add(number, day, amount_minor);
        if let Keep::Purchases(unit) = self.keep {
            self.purchases.push((number, unit.period_of_day(day), amount_minor));
        }
        if let Some((unit, periods)) = self.periods.as_mut() {
            periods.add(number, unit.period_of_day(day), amount_minor);
        }
        if let Some(history) = self.history.as_mut() {
            history.add(number, day, amount_minor);
        }
        if let Some(category) = category
            && day <= self.as_of_day
            && !category.is_empty()
        {
            let bit = match self.category_names.iter().position(|name| name == category) {
                Some(bit) => bit,
                None if self.category_names.len() < CATEGORIES_MAX => {
                    self.category_names.push(category.to_owned());
                    self.category_names.len() - 1
                }
                None => {
                    return Err(bad(
                        "analysis.too_many_categories",
                        line,
                        format!(
                            "category: at most {CATEGORIES_MAX} distinct categories; {category:?} would be one more"
                        ),
                    ));
                }
            };
            let index = number as usize;
            if index >= self.customer_categories.len() {
                self.customer_categories.resize(index + 1, 0);
            }
            self.customer_categories[index] |= 1 << bit;
        }
        Ok(())
    }

    /// A refund (a negative amount) of customer `number` on `day`: it lowers what they
    /// paid but is not a visit, so only the totals see it.
    pub(crate) fn refund(
        &mut self,
        number: u32,
        day: i32,
        amount_minor: i64,
        store: Option<&str>,
    ) -> ServiceResult<()> {
        self.rows += 1;
        self.accumulator.refund(number, day, amount_minor);
        if self.kpi.is_some() {
            let store = self.store_number(store, None)?;
            if let Some(kpi) = self.kpi.as_mut() {
                kpi.add(number, day, amount_minor, store);
            }
        }
        Ok(())
    }

    fn store_number(&mut self, store: Option<&str>, line: Option<u64>) -> ServiceResult<Option<u32>> {
        let Some(store) = store.filter(|store| !store.is_empty()) else {
            return Ok(None);
        };
        if let Some(number) = self.store_numbers.get(store) {
            return Ok(Some(*number));
        }
        if self.store_names.len() >= kpi::STORES_MAX {
            return Err(bad(
                "analysis.too_many_stores",
                line,
                format!("store: at most {} distinct stores", kpi::STORES_MAX),
            ));
        }
        let number = self.store_names.len() as u32;
        self.store_numbers.insert(store.to_owned(), number);
        self.store_names.push(store.to_owned());
        Ok(Some(number))
    }

    pub(crate) fn finish(self) -> PurchaseFile {
        PurchaseFile {
            customer_ids: self.customer_ids,
            accumulator: self.accumulator,
            rows: self.rows,
            purchases: self.purchases,
            periods: self.periods.map(|(_, periods)| periods),
            history: self.history,
            category_names: self.category_names,
            customer_categories: self.customer_categories,
            kpi: self.kpi,
            store_names: self.store_names,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> ServiceResult<PurchaseFile> {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        read_purchases(
            text.as_bytes(),
            &zone,
            Date::constant(2026, 6, 30),
            Currency::CNY,
            Keep::Purchases(PeriodUnit::Day),
            |_| {},
        )
    }

    #[test]
    fn dates_local_times_and_instants_land_on_local_days() {
        let file = read(
            "customer_id,timestamp,amount,category\n\
             A,2026-06-30,10.00,food\n\
             A,2026-06-29T20:00:00Z,5.50,food\n\
             B,2026-06-30 23:59:59,1,\n\
             C,2026-07-01T00:00:00+08:00,99,\n",
        )
        .unwrap();
        assert_eq!(file.customer_ids, ["A", "B", "C"]);
        let figures = file.accumulator.rfm_figures();
        // 20:00Z on the 29th is 04:00 on the 30th in Shanghai.
        assert_eq!((figures[0].recency_days, figures[0].frequency, figures[0].monetary_minor), (0, 2, 1_550));
        assert_eq!(figures[1].monetary_minor, 100);
        assert_eq!(figures[2].frequency, 0, "after the analysis day");
        assert_eq!(file.rows, 4);
        assert_eq!(file.purchases.len(), 4, "kept whatever the day: the models choose");
    }

    #[test]
    fn bad_rows_and_missing_columns_say_where() {
        let missing = read("customer,timestamp,amount\nA,2026-06-30,1\n").unwrap_err();
        assert!(matches!(
            missing,
            ServiceError::BadFile { code: "analysis.columns_missing", line: Some(1), .. }
        ));
        let amount = read("customer_id,timestamp,amount\nA,2026-06-30,1\nB,2026-06-30,12.345\n").unwrap_err();
        match amount {
            ServiceError::BadFile { code, line, message } => {
                assert_eq!((code, line), ("analysis.row_invalid", Some(3)));
                assert!(message.starts_with("amount:"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let time = read("customer_id,timestamp,amount\nA,yesterday,1\n").unwrap_err();
        assert!(matches!(time, ServiceError::BadFile { line: Some(2), .. }));
    }

    #[test]
    fn day_numbers_count_from_1970() {
        assert_eq!(day_number(Date::constant(1970, 1, 2)), 1);
        assert_eq!(day_number(Date::constant(2026, 6, 30)) - day_number(Date::constant(2026, 6, 1)), 29);
        // Every day from 1600 to 2400 against jiff's own count.
        let epoch = Date::constant(1970, 1, 1);
        let mut date = Date::constant(1600, 1, 1);
        while date < Date::constant(2400, 1, 1) {
            let expected = date.since((jiff::Unit::Day, epoch)).unwrap().get_days();
            assert_eq!(day_number(date), expected, "{date}");
            date = date.tomorrow().unwrap();
        }
    }

    #[test]
    fn the_plain_local_day_agrees_with_the_general_parser_and_refuses_what_it_does_not_know() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        for raw in [
            "2026-06-30",
            "2026-06-30 23:59:59",
            "2026-06-30T00:00",
            "2024-02-29 12:00:00.125",
            " 2026-01-01 ",
        ] {
            let general = date::parse_moment(raw, &zone).unwrap();
            assert_eq!(
                plain_local_day(raw),
                Some(day_number(general.to_zoned(zone.clone()).date())),
                "{raw}"
            );
        }
        for raw in [
            "2026-02-30",
            "2026-06-30 24:00",
            "2026-06-30T12:00Z",
            "2026-06-30 12:00+08:00",
            "2026-6-30",
            "2026-06-30 12:60",
            "2026-06-30 1:00",
            "2026-06-30x",
        ] {
            assert_eq!(plain_local_day(raw), None, "{raw}");
        }
        // Refused by the fast path, read by the general one: 20:00Z is the next local day.
        assert_eq!(local_day("2026-06-29T20:00:00Z", &zone), Ok(day_number(Date::constant(2026, 6, 30))));
        assert!(local_day("2026-02-30", &zone).is_err());
    }

    #[test]
    fn periods_stream_as_the_rows_are_read() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let text = "customer_id,timestamp,amount\nA,2026-06-01,10.00\nA,2026-06-01,5.00\nB,2026-06-02,1\nA,2026-06-10,3.00\n";
        let file = read_purchases(
            text.as_bytes(),
            &zone,
            Date::constant(2026, 6, 30),
            Currency::CNY,
            Keep::Periods(PeriodUnit::Day),
            |_| {},
        )
        .unwrap();
        let periods = file.periods.unwrap();
        assert!(periods.in_order());
        let summaries = periods.summaries(2);
        let a = summaries[0].unwrap();
        assert_eq!((a.frequency, a.recency, a.age, a.average_minor), (1.0, 9.0, 29.0, 300.0));
        assert!(file.purchases.is_empty(), "nothing kept per purchase");
    }
}
