//! Analyses straight on a purchases file, with no database: `customer_id,timestamp,amount`
//! (optional `category`, `store`; the `customer_external_id,occurred_at,amount` of a
//! transactions import file also read), CSV with a header row. Timestamps are dates
//! (`2026-06-30`), local date-times (`2026-06-30 12:05:00`, in the business's time zone) or
//! instants with an offset; amounts are decimal (`88.50`). One pass, memory per customer.

use std::{collections::HashMap, io::Read};

use cardcrm_analytics::features::Accumulator;
use cardcrm_domain::{
    date,
    money::{Currency, parse_amount_minor},
};
use jiff::{Timestamp, civil::Date, tz::TimeZone};

use crate::error::{ServiceError, ServiceResult};

/// Most purchase rows one file may hold.
pub const ANALYSIS_ROWS_MAX: u64 = 200_000_000;
/// Most distinct customers one file may hold.
pub const ANALYSIS_CUSTOMERS_MAX: usize = 20_000_000;

/// The purchases of a file, added up per customer up to the analysis day.
#[derive(Debug)]
pub struct PurchaseFile {
    /// Customer ids as written in the file, by customer number.
    pub customer_ids: Vec<String>,
    pub accumulator: Accumulator,
    pub rows: u64,
    /// (customer number, day number, amount in minor units) of every purchase, when asked
    /// for: the period models choose which count (a week unit takes the analysis day's
    /// whole week, as lifetimes does).
    pub purchases: Vec<(u32, i32, i64)>,
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
    Purchases,
}

/// Days since 1970-01-01 of a local date.
pub fn day_number(date: Date) -> i32 {
    let epoch = Date::constant(1970, 1, 1);
    date.since((jiff::Unit::Day, epoch)).map_or(0, |span| span.get_days())
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
    let mut numbers: HashMap<String, u32> = HashMap::new();
    let mut customer_ids = Vec::new();
    let as_of_day = day_number(as_of);
    let mut accumulator = Accumulator::new(as_of_day);
    let mut purchases = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0_u64;
    loop {
        let line = rows + 2;
        match csv.read_record(&mut record) {
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
        rows += 1;
        if rows > ANALYSIS_ROWS_MAX {
            return Err(bad(
                "analysis.too_many_rows",
                Some(line),
                format!("at most {ANALYSIS_ROWS_MAX} rows"),
            ));
        }
        let customer = record.get(customer_column).unwrap_or_default().trim();
        if customer.is_empty() {
            return Err(bad("analysis.row_invalid", Some(line), "customer_id: it is empty".into()));
        }
        let moment: Timestamp = date::parse_moment(record.get(time_column).unwrap_or_default(), zone)
            .map_err(|error| {
                bad("analysis.row_invalid", Some(line), format!("timestamp: {}", error.message))
            })?;
        let amount_minor = parse_amount_minor(record.get(amount_column).unwrap_or_default(), currency)
            .map_err(|error| bad("analysis.row_invalid", Some(line), format!("amount: {}", error.message)))?;
        let number = match numbers.get(customer) {
            Some(number) => *number,
            None => {
                if customer_ids.len() >= ANALYSIS_CUSTOMERS_MAX {
                    return Err(bad(
                        "analysis.too_many_customers",
                        Some(line),
                        format!("at most {ANALYSIS_CUSTOMERS_MAX} customers"),
                    ));
                }
                let number = customer_ids.len() as u32;
                numbers.insert(customer.to_owned(), number);
                customer_ids.push(customer.to_owned());
                number
            }
        };
        let day = day_number(moment.to_zoned(zone.clone()).date());
        accumulator.add(number, day, amount_minor);
        if keep == Keep::Purchases {
            purchases.push((number, day, amount_minor));
        }
        if rows.is_multiple_of(1_000_000) {
            progress(rows);
        }
    }
    progress(rows);
    Ok(PurchaseFile { customer_ids, accumulator, rows, purchases })
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
            Keep::Purchases,
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
    }
}
