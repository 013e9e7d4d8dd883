//! Reading import files: CSV (UTF-8 or GB18030/GBK, detected or chosen) and XLSX, as rows of
//! text with the line number each came from. Column names are matched against a kind's
//! known columns and their Chinese aliases.

use std::{
    io::{BufReader, Cursor, Read},
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
};

use serde::{Deserialize, Serialize};

use crate::{error::ServiceError, import::ImportProgress};

/// The fields of one row, in one buffer (two allocations per row, not one per field).
pub type Fields = csv::StringRecord;

/// Where the bytes of an import come from.
#[derive(Debug)]
pub enum ImportSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl ImportSource {
    pub fn size(&self) -> u64 {
        match self {
            Self::Path(path) => std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0),
            Self::Bytes(bytes) => bytes.len() as u64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Decide from the file name, then from the content.
    #[default]
    Auto,
    Csv,
    Xlsx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoding {
    /// UTF-8 when the start of the file is valid UTF-8, else GB18030 (a superset of GBK,
    /// what Excel writes on Chinese Windows) when that decodes.
    #[default]
    Auto,
    Utf8,
    Gb18030,
}

impl TextEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Utf8 => "utf-8",
            Self::Gb18030 => "gb18030",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        match raw.trim().to_lowercase().replace('_', "-").as_str() {
            "auto" => Ok(Self::Auto),
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "gb18030" | "gbk" | "gb2312" => Ok(Self::Gb18030),
            _ => Err(ServiceError::invalid(
                "encoding",
                "encoding.unknown",
                format!("`{raw}` is not an encoding; use auto, utf-8 or gbk"),
            )),
        }
    }
}

/// A known column of an import kind.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
}

/// For each known column, the position of its field in a row (if the file has it).
#[derive(Debug, Clone)]
pub struct ColumnMap {
    positions: Vec<Option<usize>>,
}

impl ColumnMap {
    /// Matches a header row against the known columns. Every header must be known (a typo
    /// would otherwise silently drop a column), except those starting with `_`, such as the
    /// `_line` and `_errors` columns of a reject file, which are ignored. Names compare
    /// case-insensitively, ignoring spaces, dashes and underscores.
    pub fn new(columns: &[Column], header: &[String]) -> Result<Self, ServiceError> {
        fn key(text: &str) -> String {
            cardcrm_domain::text::to_half_width(text)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_lowercase()
                .chars()
                .filter(|character| !matches!(character, ' ' | '_' | '-'))
                .collect()
        }
        let mut positions = vec![None; columns.len()];
        for (position, raw) in header.iter().enumerate() {
            let wanted = key(raw);
            if wanted.is_empty() || raw.trim().starts_with('_') {
                continue;
            }
            let found = columns.iter().position(|column| {
                key(column.name) == wanted || column.aliases.iter().any(|alias| key(alias) == wanted)
            });
            match found {
                Some(index) if positions[index].is_some() => {
                    return Err(ServiceError::BadFile {
                        code: "import.duplicate_column",
                        line: Some(1),
                        message: format!(
                            "line 1: column `{raw}` appears twice (as `{}`)",
                            columns[index].name
                        ),
                    });
                }
                Some(index) => positions[index] = Some(position),
                None => {
                    let known: Vec<&str> = columns.iter().map(|column| column.name).collect();
                    return Err(ServiceError::BadFile {
                        code: "import.unknown_column",
                        line: Some(1),
                        message: format!(
                            "line 1: unknown column `{raw}`; known columns are {}",
                            known.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(Self { positions })
    }

    pub fn has(&self, column: usize) -> bool {
        self.positions[column].is_some()
    }

    /// The field of `column` in `row`, or "" when the file lacks the column.
    pub fn get<'a>(&self, row: &'a Fields, column: usize) -> &'a str {
        self.positions[column].and_then(|position| row.get(position)).unwrap_or("")
    }
}

/// A stream of rows with their line numbers.
pub struct RowReader {
    inner: Inner,
    pub header: Vec<String>,
    pub encoding: TextEncoding,
}

enum Inner {
    Csv { reader: csv::Reader<Box<dyn Read + Send>>, record: csv::ByteRecord },
    Sheet { rows: std::vec::IntoIter<(u64, Vec<String>)> },
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    progress: Arc<ImportProgress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.progress.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

fn bad_file(code: &'static str, line: Option<u64>, message: String) -> ServiceError {
    ServiceError::BadFile { code, line, message }
}

fn decode(bytes: &[u8], encoding: TextEncoding, line: u64) -> Result<String, ServiceError> {
    match encoding {
        TextEncoding::Gb18030 => encoding_rs::GB18030
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|text| text.into_owned())
            .ok_or_else(|| {
                bad_file(
                    "import.bad_encoding",
                    Some(line),
                    format!("line {line}: the text is not valid GB18030/GBK"),
                )
            }),
        _ => std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| utf8_error(line)),
    }
}

fn utf8_error(line: u64) -> ServiceError {
    bad_file(
        "import.bad_encoding",
        Some(line),
        format!(
            "line {line}: the text is not valid UTF-8 (if the file was saved as GBK, import it with encoding gbk)"
        ),
    )
}

/// Guesses the encoding from the first bytes: UTF-8 if they are valid UTF-8 (allowing a
/// character cut at the end), else GB18030 if they decode as that, else UTF-8.
fn sniff(head: &[u8]) -> TextEncoding {
    match std::str::from_utf8(head) {
        Ok(_) => TextEncoding::Utf8,
        Err(error) if error.error_len().is_none() => TextEncoding::Utf8,
        Err(_) => {
            let cut = head.len().saturating_sub(4);
            let decodable = (cut..=head.len()).rev().any(|end| {
                encoding_rs::GB18030
                    .decode_without_bom_handling_and_without_replacement(&head[..end])
                    .is_some()
            });
            if decodable { TextEncoding::Gb18030 } else { TextEncoding::Utf8 }
        }
    }
}

fn is_xlsx(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Formats an XLSX cell as import text: integers without `.0` (phone numbers are often
/// stored as numbers), dates as ISO dates or date-times.
fn cell_text(cell: &calamine::Data) -> String {
    use calamine::Data;
    match cell {
        Data::Empty | Data::Error(_) => String::new(),
        Data::String(text) | Data::DateTimeIso(text) | Data::DurationIso(text) => text.clone(),
        Data::Int(value) => value.to_string(),
        Data::Bool(value) => value.to_string(),
        Data::Float(value) => {
            if value.fract() == 0.0 && value.abs() < 1e15 {
                format!("{}", *value as i64)
            } else {
                value.to_string()
            }
        }
        Data::DateTime(moment) => excel_serial_text(moment.as_f64()),
    }
}

/// An Excel serial date (days since 1899-12-30, fraction is the time of day) as text.
fn excel_serial_text(serial: f64) -> String {
    let days = serial.floor() as i64;
    let seconds = ((serial - serial.floor()) * 86_400.0).round() as i64;
    let base = jiff::civil::date(1899, 12, 30);
    let Ok(date) = base.checked_add(jiff::Span::new().days(days)) else { return serial.to_string() };
    if seconds == 0 {
        date.to_string()
    } else {
        let time = jiff::civil::Time::midnight()
            .checked_add(jiff::Span::new().seconds(seconds.min(86_399)))
            .unwrap_or(jiff::civil::Time::midnight());
        format!("{date} {}", time.strftime("%H:%M:%S"))
    }
}

impl RowReader {
    pub fn open(
        source: ImportSource,
        file_name: &str,
        format: FileFormat,
        encoding: TextEncoding,
        progress: Arc<ImportProgress>,
    ) -> Result<Self, ServiceError> {
        let lower = file_name.to_lowercase();
        let by_name = if lower.ends_with(".xlsx") || lower.ends_with(".xlsm") {
            Some(FileFormat::Xlsx)
        } else if lower.ends_with(".csv") || lower.ends_with(".txt") || lower.ends_with(".tsv") {
            Some(FileFormat::Csv)
        } else {
            None
        };
        let (head, reader): (Vec<u8>, Box<dyn Read + Send>) = match source {
            ImportSource::Path(path) => {
                let mut file = std::fs::File::open(&path).map_err(|error| {
                    bad_file("import.unreadable", None, format!("cannot open {}: {error}", path.display()))
                })?;
                let mut head = vec![0_u8; 64 * 1024];
                let mut filled = 0;
                while filled < head.len() {
                    let read = file.read(&mut head[filled..]).map_err(|error| {
                        bad_file(
                            "import.unreadable",
                            None,
                            format!("cannot read {}: {error}", path.display()),
                        )
                    })?;
                    if read == 0 {
                        break;
                    }
                    filled += read;
                }
                head.truncate(filled);
                let rest = BufReader::with_capacity(1 << 20, file);
                (head.clone(), Box::new(Cursor::new(head).chain(rest)))
            }
            ImportSource::Bytes(bytes) => {
                let head = bytes[..bytes.len().min(64 * 1024)].to_vec();
                (head, Box::new(Cursor::new(bytes)))
            }
        };
        let format = match (format, by_name) {
            (FileFormat::Auto, Some(format)) => format,
            (FileFormat::Auto, None) if is_xlsx(&head) => FileFormat::Xlsx,
            (FileFormat::Auto, None) => FileFormat::Csv,
            (chosen, _) => chosen,
        };
        if format == FileFormat::Xlsx {
            return Self::open_xlsx(reader, progress);
        }
        if is_xlsx(&head) {
            return Err(bad_file(
                "import.wrong_format",
                None,
                "the file is an Excel workbook; import it as xlsx".into(),
            ));
        }
        let encoding = match encoding {
            TextEncoding::Auto => sniff(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head)),
            chosen => chosen,
        };
        let first_line = head.split(|byte| *byte == b'\n').next().unwrap_or(&[]);
        let delimiter = if !first_line.contains(&b',') && first_line.contains(&b'\t') {
            b'\t'
        } else if !first_line.contains(&b',') && first_line.contains(&b';') {
            b';'
        } else {
            b','
        };
        let counted: Box<dyn Read + Send> = Box::new(Counting { inner: reader, progress });
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(counted);
        let mut record = csv::ByteRecord::new();
        let has_header = reader.read_byte_record(&mut record).map_err(csv_error)?;
        if !has_header {
            return Err(bad_file("import.empty", None, "the file is empty".into()));
        }
        let mut header = Vec::with_capacity(record.len());
        for (index, field) in record.iter().enumerate() {
            let field = if index == 0 { field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field) } else { field };
            header.push(decode(field, encoding, 1)?);
        }
        Ok(Self { inner: Inner::Csv { reader, record }, header, encoding })
    }

    fn open_xlsx(
        mut reader: Box<dyn Read + Send>,
        progress: Arc<ImportProgress>,
    ) -> Result<Self, ServiceError> {
        use calamine::Reader;
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|error| {
            bad_file("import.unreadable", None, format!("cannot read the workbook: {error}"))
        })?;
        progress.bytes_read.store(bytes.len() as u64, Ordering::Relaxed);
        let mut workbook = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|error| {
            bad_file("import.bad_workbook", None, format!("the workbook cannot be read: {error}"))
        })?;
        let range = workbook
            .worksheet_range_at(0)
            .ok_or_else(|| bad_file("import.empty", None, "the workbook has no sheet".into()))?
            .map_err(|error| {
                bad_file("import.bad_workbook", None, format!("the first sheet cannot be read: {error}"))
            })?;
        let first_row = range.start().map_or(0, |(row, _)| u64::from(row));
        let mut rows: Vec<(u64, Vec<String>)> = range
            .rows()
            .enumerate()
            .map(|(index, cells)| (first_row + index as u64 + 1, cells.iter().map(cell_text).collect()))
            .collect();
        if rows.is_empty() {
            return Err(bad_file("import.empty", None, "the first sheet is empty".into()));
        }
        let (_, header) = rows.remove(0);
        Ok(Self { inner: Inner::Sheet { rows: rows.into_iter() }, header, encoding: TextEncoding::Utf8 })
    }

    /// The next non-blank row and its line number.
    pub fn next_row(&mut self) -> Option<Result<(u64, Fields), ServiceError>> {
        loop {
            let (line, fields) = match &mut self.inner {
                Inner::Csv { reader, record } => match reader.read_byte_record(record) {
                    Ok(false) => return None,
                    Err(error) => return Some(Err(csv_error(error))),
                    Ok(true) => {
                        let line = record.position().map_or(0, |position| position.line());
                        match self.encoding {
                            TextEncoding::Gb18030 => {
                                let mut fields =
                                    Fields::with_capacity(record.as_slice().len() * 3 / 2, record.len());
                                for field in record.iter() {
                                    match decode(field, self.encoding, line) {
                                        Ok(text) => fields.push_field(&text),
                                        Err(error) => return Some(Err(error)),
                                    }
                                }
                                (line, fields)
                            }
                            _ => match Fields::from_byte_record(record.clone()) {
                                Ok(fields) => (line, fields),
                                Err(_) => return Some(Err(utf8_error(line))),
                            },
                        }
                    }
                },
                Inner::Sheet { rows } => rows.next().map(|(line, cells)| (line, Fields::from(cells)))?,
            };
            if fields.iter().all(|field| field.trim().is_empty()) {
                continue;
            }
            return Some(Ok((line, fields)));
        }
    }
}

fn csv_error(error: csv::Error) -> ServiceError {
    let line = error.position().map(|position| position.line());
    let message = match line {
        Some(line) => format!("line {line}: the CSV cannot be read: {error}"),
        None => format!("the CSV cannot be read: {error}"),
    };
    bad_file("import.bad_csv", line, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[
        Column { name: "name", aliases: &["姓名"] },
        Column { name: "phone", aliases: &["手机号", "手机"] },
    ];

    fn open(bytes: &[u8], encoding: TextEncoding) -> Result<RowReader, ServiceError> {
        RowReader::open(
            ImportSource::Bytes(bytes.to_vec()),
            "x.csv",
            FileFormat::Auto,
            encoding,
            Arc::default(),
        )
    }

    #[test]
    fn headers_match_names_and_aliases() {
        let map = ColumnMap::new(COLUMNS, &["手机号".into(), " Name ".into()]).unwrap();
        let row = Fields::from(vec!["138", "张三"]);
        assert_eq!(map.get(&row, 0), "张三");
        assert_eq!(map.get(&row, 1), "138");
        let error = ColumnMap::new(COLUMNS, &["name".into(), "fax".into()]).unwrap_err();
        assert!(error.to_string().contains("unknown column `fax`"), "{error}");
        assert!(ColumnMap::new(COLUMNS, &["name".into(), "姓名".into()]).is_err());
    }

    #[test]
    fn reads_utf8_with_bom_and_line_numbers_skipping_blank_rows() {
        let mut reader =
            open("\u{feff}name,phone\n张三,138\n,\n\"李\n四\",139\n".as_bytes(), TextEncoding::Auto).unwrap();
        assert_eq!(reader.header, vec!["name", "phone"]);
        assert_eq!(reader.next_row().unwrap().unwrap(), (2, Fields::from(vec!["张三", "138"])));
        assert_eq!(reader.next_row().unwrap().unwrap(), (4, Fields::from(vec!["李\n四", "139"])));
        assert!(reader.next_row().is_none());
    }

    #[test]
    fn detects_gbk_and_reports_broken_utf8_with_its_line() {
        let (gbk, _, _) = encoding_rs::GBK.encode("姓名,手机\n张三,138\n");
        let mut reader = open(&gbk, TextEncoding::Auto).unwrap();
        assert_eq!(reader.encoding, TextEncoding::Gb18030);
        assert_eq!(reader.header, vec!["姓名", "手机"]);
        assert_eq!(&reader.next_row().unwrap().unwrap().1[0], "张三");

        let mut broken = b"name,phone\nok,1\n".to_vec();
        broken.extend_from_slice(b"bad\xff\xfe,2\n");
        let mut reader = open(&broken, TextEncoding::Utf8).unwrap();
        assert!(reader.next_row().unwrap().is_ok());
        let error = reader.next_row().unwrap().unwrap_err();
        assert!(matches!(error, ServiceError::BadFile { line: Some(3), .. }), "{error}");
    }

    #[test]
    fn excel_serial_dates() {
        assert_eq!(excel_serial_text(32874.0), "1990-01-01");
        assert_eq!(excel_serial_text(46023.5), "2026-01-01 12:00:00");
    }
}
