//! Customer import: one row per customer, cleaned and validated like the API, with
//! duplicates inside the file and against stored customers detected through the blind
//! indexes and handled by the chosen policy.

use std::collections::{BTreeMap, HashMap};

use cardcrm_domain::{
    FieldError, FieldErrors,
    customer::{Channel, ConsentChannel, CustomerDraft, CustomerInput, Tag},
    text,
};
use cardcrm_store::{
    Conn, DeferredIndex,
    repo::customers::{self as repo, ConsentRecord, CustomerRecord, IndexedField},
};

use super::{BatchOutcome, Checked, Column, ColumnMap, DuplicatePolicy, Fields, ImportKind, Staged, push};
use crate::{
    Services, audit,
    customers::{open_pii, seal_record},
    error::{ServiceError, ServiceResult},
    identity::Identity,
};

pub(crate) struct CustomerImport {
    pub services: Services,
    /// Rows the file probably holds, from its size.
    pub rows_expected: u64,
    pub bulk_rows_min: u64,
    /// Ids per block handed to the reader: at least the rows of one batch.
    pub id_block_size: usize,
    pub identity: Identity,
    pub today: jiff::civil::Date,
    pub now_ms: i64,
    pub stores: HashMap<String, i64>,
    pub default_store_id: Option<i64>,
    pub policy: DuplicatePolicy,
}

const NAME: usize = 0;
const GENDER: usize = 1;
const BIRTHDAY: usize = 2;
const PHONE: usize = 3;
const EMAIL: usize = 4;
const ID_KIND: usize = 5;
const ID_NUMBER: usize = 6;
const OCCUPATION: usize = 7;
const INCOME_BAND: usize = 8;
const PROVINCE: usize = 9;
const CITY: usize = 10;
const ADDRESS: usize = 11;
const SOURCE_CHANNEL: usize = 12;
const EXTERNAL_ID: usize = 13;
const TAGS: usize = 14;
const STORE_CODE: usize = 15;
const CONSENT_FIRST: usize = 16;

const COLUMNS: &[Column] = &[
    Column { name: "name", aliases: &["姓名", "客户姓名", "会员姓名"] },
    Column { name: "gender", aliases: &["性别", "sex"] },
    Column { name: "birthday", aliases: &["生日", "出生日期", "birth_date", "date_of_birth"] },
    Column { name: "phone", aliases: &["手机", "手机号", "手机号码", "电话", "mobile"] },
    Column { name: "email", aliases: &["邮箱", "电子邮件", "e-mail"] },
    Column { name: "id_kind", aliases: &["证件类型"] },
    Column { name: "id_number", aliases: &["身份证号", "身份证", "证件号码", "证件号"] },
    Column { name: "occupation", aliases: &["职业"] },
    Column { name: "income_band", aliases: &["收入", "月收入", "income"] },
    Column { name: "province", aliases: &["省份", "省"] },
    Column { name: "city", aliases: &["城市", "市"] },
    Column { name: "address", aliases: &["地址", "住址"] },
    Column { name: "source_channel", aliases: &["来源", "来源渠道", "渠道", "channel"] },
    Column {
        name: "external_id", aliases: &["外部编号", "会员编号", "会员号", "客户编号", "member_no"]
    },
    Column { name: "tags", aliases: &["标签"] },
    Column { name: "store_code", aliases: &["门店", "门店编码", "门店代码", "store"] },
    Column { name: "consent_sms", aliases: &["短信营销", "同意短信"] },
    Column { name: "consent_email", aliases: &["邮件营销", "同意邮件"] },
    Column { name: "consent_phone", aliases: &["电话营销", "同意电话"] },
    Column { name: "consent_wechat", aliases: &["微信营销", "同意微信"] },
    Column { name: "consent_app_push", aliases: &["推送营销", "同意推送"] },
    Column { name: "consent_post", aliases: &["邮寄营销", "同意邮寄"] },
];

const CONSENT_CHANNELS: [ConsentChannel; 6] = [
    ConsentChannel::Sms,
    ConsentChannel::Email,
    ConsentChannel::Phone,
    ConsentChannel::Wechat,
    ConsentChannel::AppPush,
    ConsentChannel::Post,
];

pub(crate) struct CustomerRow {
    draft: CustomerDraft,
    /// The row as a new customer, sealed under a fresh id (unused if it matches a stored one).
    record: CustomerRecord,
    consents: Vec<(ConsentChannel, bool)>,
    /// The stored customer this row matched, under the skip and update policies.
    existing: Option<i64>,
}

/// Fresh customer ids, handed by the writer to the reader in blocks: a ciphertext is bound
/// to its row id, so the reader, which seals, needs the id before the writer sees the row.
/// The writer sends two blocks when it begins and one per batch it receives, so the reader,
/// which uses at most one block per batch, never waits on a writer that waits on it.
pub(crate) struct IdFeed {
    blocks: crossbeam_channel::Receiver<Vec<i64>>,
}

/// What the reader gets from the writer: fresh ids and, for a bulk load, every key of the
/// customers stored before it, so duplicates are found without the deferred indexes.
pub(crate) struct ReaderShare {
    ids: IdFeed,
    stored: Option<StoredKeys>,
}

/// Stored customers by each key a row can match on.
#[derive(Default)]
pub(crate) struct StoredKeys {
    phones: HashMap<Vec<u8>, i64>,
    emails: HashMap<Vec<u8>, i64>,
    id_numbers: HashMap<Vec<u8>, i64>,
    /// (source channel, external id) → customer.
    external: HashMap<(String, String), i64>,
}

impl StoredKeys {
    /// The stored customer a row matches, and on which field: external id first, then
    /// phone, e-mail and ID number.
    fn matching(&self, row: &CustomerRow) -> Option<(&'static str, i64)> {
        let by_index = |map: &HashMap<Vec<u8>, i64>, index: &Option<Vec<u8>>| {
            index.as_ref().and_then(|index| map.get(index)).copied()
        };
        let external = row.draft.external_id.as_ref().and_then(|id| {
            self.external.get(&(row.draft.source_channel.as_str().to_owned(), id.clone())).copied()
        });
        external
            .map(|customer| ("external_id", customer))
            .or_else(|| by_index(&self.phones, &row.record.phone_index).map(|customer| ("phone", customer)))
            .or_else(|| by_index(&self.emails, &row.record.email_index).map(|customer| ("email", customer)))
            .or_else(|| {
                by_index(&self.id_numbers, &row.record.id_number_index)
                    .map(|customer| ("id_number", customer))
            })
    }

    /// Every key of every stored customer (for a bulk load).
    fn load_all(conn: &mut Conn<'_>) -> ServiceResult<Self> {
        Ok(Self {
            phones: repo::oldest_by_index(conn, IndexedField::Phone)?,
            emails: repo::oldest_by_index(conn, IndexedField::Email)?,
            id_numbers: repo::oldest_by_index(conn, IndexedField::IdNumber)?,
            external: repo::by_external_id(conn)?,
        })
    }

    /// The keys of the stored customers that rows of one batch could match.
    fn load_for(conn: &mut Conn<'_>, rows: &[Staged<CustomerRow>]) -> ServiceResult<Self> {
        let collect = |pick: fn(&CustomerRow) -> &Option<Vec<u8>>| -> Vec<Vec<u8>> {
            rows.iter().filter_map(|staged| pick(&staged.row).clone()).collect()
        };
        let mut by_channel: HashMap<String, Vec<String>> = HashMap::new();
        for staged in rows {
            if let Some(id) = &staged.row.draft.external_id {
                by_channel
                    .entry(staged.row.draft.source_channel.as_str().to_owned())
                    .or_default()
                    .push(id.clone());
            }
        }
        let mut external = HashMap::new();
        for (channel, ids) in by_channel {
            for (id, customer) in repo::match_external_ids(conn, &channel, &ids)? {
                external.insert((channel.clone(), id), customer);
            }
        }
        Ok(Self {
            phones: repo::match_indexes(conn, IndexedField::Phone, &collect(|row| &row.record.phone_index))?,
            emails: repo::match_indexes(conn, IndexedField::Email, &collect(|row| &row.record.email_index))?,
            id_numbers: repo::match_indexes(
                conn,
                IndexedField::IdNumber,
                &collect(|row| &row.record.id_number_index),
            )?,
            external,
        })
    }
}

/// Applies the duplicate policy to a row that matched a stored customer (or did not).
fn settle(
    policy: DuplicatePolicy,
    row: &mut CustomerRow,
    matched: Option<(&'static str, i64)>,
) -> Result<(), FieldErrors> {
    match (matched, policy) {
        (None, _) | (Some(_), DuplicatePolicy::Create) => Ok(()),
        (Some((field, customer)), DuplicatePolicy::Error) => {
            let mut errors = FieldErrors::new();
            push(
                &mut errors,
                field,
                "customer.duplicate",
                format!(
                    "customer {customer} already has this {field}; choose skip, update or create for duplicates"
                ),
            );
            Err(errors)
        }
        (Some((_, customer)), DuplicatePolicy::Skip | DuplicatePolicy::Update) => {
            row.existing = Some(customer);
            Ok(())
        }
    }
}

/// Bytes of a typical customer line, to guess a file's rows from its size (low on purpose).
pub(crate) const BYTES_PER_ROW_GUESS: u64 = 120;

/// The writer's state across batches.
pub(crate) struct Writing {
    ids: IdRefill,
    /// A bulk load: indexes dropped for the load (rebuilt before commit), and duplicates
    /// found by the reader against [`StoredKeys`].
    deferred_indexes: Vec<DeferredIndex>,
    /// Customers written since the planner's statistics were refreshed, and how many were
    /// stored then: refreshed each time the table has about doubled.
    written_since_statistics: u64,
    stored_at_statistics: u64,
}

/// Fewest new customers worth refreshing the planner's statistics for.
const STATISTICS_ROWS_MIN: u64 = 20_000;

/// The writer's end of the [`IdFeed`].
pub(crate) struct IdRefill {
    blocks: crossbeam_channel::Sender<Vec<i64>>,
    block_size: usize,
}

impl IdRefill {
    fn send_block(&self, conn: &mut Conn<'_>) -> ServiceResult<()> {
        let ids = conn.allocate_ids("customers", self.block_size)?;
        // The reader may have finished already; then the ids are simply not used.
        let _ = self.blocks.send(ids);
        Ok(())
    }
}

/// The reader's state: which line first had each phone, e-mail, ID number and external id,
/// and the ids left of the current block.
#[derive(Default)]
pub(crate) struct SeenInFile {
    keys: HashMap<(u8, u128), u64>,
    external: HashMap<String, u64>,
    ids: std::vec::IntoIter<i64>,
}

impl SeenInFile {
    /// The next fresh id, waiting for the writer's next block when this one is used up.
    /// `None` when the writer has stopped (the import is over).
    fn next_id(&mut self, feed: &IdFeed) -> Option<i64> {
        loop {
            if let Some(id) = self.ids.next() {
                return Some(id);
            }
            self.ids = feed.blocks.recv().ok()?.into_iter();
        }
    }
}

fn key_of(index: &[u8]) -> u128 {
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&index[..16]);
    u128::from_le_bytes(bytes)
}

fn parse_yes_no(raw: &str) -> Result<Option<bool>, FieldError> {
    match text::clean(raw).unwrap_or_default().to_lowercase().as_str() {
        "" => Ok(None),
        "yes" | "y" | "true" | "1" | "是" | "同意" => Ok(Some(true)),
        "no" | "n" | "false" | "0" | "否" | "不同意" => Ok(Some(false)),
        _ => Err(FieldError::new("consent", "consent.invalid", format!("`{raw}` is not yes or no"))),
    }
}

impl CustomerImport {
    fn given(map: &ColumnMap, fields: &Fields, column: usize) -> Option<String> {
        let value = map.get(fields, column);
        (!value.trim().is_empty()).then(|| value.to_owned())
    }
}

impl ImportKind for CustomerImport {
    const NAME: &'static str = "customers";
    type Row = CustomerRow;
    type ReadState = SeenInFile;
    type Shared = ReaderShare;
    type Context = Writing;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn check_columns(map: &ColumnMap) -> ServiceResult<()> {
        if !(map.has(NAME) || map.has(PHONE) || map.has(EMAIL)) {
            return Err(ServiceError::BadFile {
                code: "import.missing_column",
                line: Some(1),
                message: "line 1: a customer file needs a name, phone or email column".into(),
            });
        }
        Ok(())
    }

    fn prepare(
        &self,
        seen: &mut SeenInFile,
        share: &ReaderShare,
        map: &ColumnMap,
        line: u64,
        fields: &Fields,
    ) -> Result<CustomerRow, FieldErrors> {
        let mut errors = FieldErrors::new();
        let get = |column| Self::given(map, fields, column);
        let input = CustomerInput {
            name: get(NAME),
            gender: get(GENDER),
            birthday: get(BIRTHDAY),
            phone: get(PHONE),
            email: get(EMAIL),
            id_kind: get(ID_KIND),
            id_number: get(ID_NUMBER),
            occupation: get(OCCUPATION),
            income_band: get(INCOME_BAND),
            province: get(PROVINCE),
            city: get(CITY),
            address: get(ADDRESS),
            source_channel: get(SOURCE_CHANNEL),
            external_id: get(EXTERNAL_ID),
            tags: get(TAGS).map(|cell| Tag::split_cell(&cell)),
            preferences: None::<BTreeMap<String, String>>,
        };
        let draft = match CustomerDraft::parse(&input, self.today, Channel::Import) {
            Ok(draft) => Some(draft),
            Err(more) => {
                errors.0.extend(more.0);
                None
            }
        };
        let store_id = match get(STORE_CODE) {
            None => self.default_store_id,
            Some(code) => {
                let code = code.trim().to_uppercase();
                match self.stores.get(&code) {
                    Some(id) => Some(*id),
                    None => {
                        push(
                            &mut errors,
                            "store_code",
                            "store.unknown",
                            format!("store code `{code}` does not exist"),
                        );
                        None
                    }
                }
            }
        };
        let mut consents = Vec::new();
        for (offset, channel) in CONSENT_CHANNELS.iter().enumerate() {
            let column = CONSENT_FIRST + offset;
            if let Some(granted) =
                errors.take(COLUMNS[column].name, parse_yes_no(map.get(fields, column))).flatten()
            {
                consents.push((*channel, granted));
            }
        }
        let Some(draft) = draft.filter(|_| errors.is_empty()) else { return Err(errors) };
        let Some(id) = seen.next_id(&share.ids) else {
            push(&mut errors, "", "import.stopped", "the import stopped before this row".into());
            return Err(errors);
        };
        let record = seal_record(self.services.vault(), id, &draft, store_id, self.now_ms);
        if self.policy != DuplicatePolicy::Create {
            for (tag, field, index) in [
                (0_u8, "phone", &record.phone_index),
                (1, "email", &record.email_index),
                (2, "id_number", &record.id_number_index),
            ] {
                if let Some(index) = index {
                    if let Some(first) = seen.keys.get(&(tag, key_of(index))) {
                        push(
                            &mut errors,
                            field,
                            "import.duplicate_in_file",
                            format!("the same {field} as line {first}"),
                        );
                    } else {
                        seen.keys.insert((tag, key_of(index)), line);
                    }
                }
            }
            if let Some(external) = &draft.external_id {
                let key = format!("{}\u{1f}{external}", draft.source_channel.as_str());
                if let Some(first) = seen.external.get(&key) {
                    push(
                        &mut errors,
                        "external_id",
                        "import.duplicate_in_file",
                        format!("the same external_id as line {first}"),
                    );
                } else {
                    seen.external.insert(key, line);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut row = CustomerRow { draft, record, consents, existing: None };
        if let Some(stored) = &share.stored {
            let matched = stored.matching(&row);
            settle(self.policy, &mut row, matched)?;
        }
        Ok(row)
    }

    fn begin(
        &self,
        conn: &mut Conn<'_>,
        _map: &ColumnMap,
        _import_id: i64,
    ) -> ServiceResult<(ReaderShare, Writing)> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let ids = IdRefill { blocks: sender, block_size: self.id_block_size.max(1) };
        ids.send_block(conn)?;
        ids.send_block(conn)?;
        let stored = repo::size_estimate(conn)?.max(0) as u64;
        // A large load relative to the table writes faster without its secondary indexes
        // and builds them once, sorted, at the end; duplicates are then found in memory
        // against every key stored before it (read here, inside the same transaction).
        let mut deferred_indexes = Vec::new();
        if super::is_bulk(self.rows_expected, stored, self.bulk_rows_min) {
            for name in repo::BULK_DEFERRABLE_INDEXES {
                if let Some(index) = conn.defer_index(name)? {
                    deferred_indexes.push(index);
                }
            }
        }
        let stored_keys = if deferred_indexes.is_empty() { None } else { Some(StoredKeys::load_all(conn)?) };
        let writing =
            Writing { ids, deferred_indexes, written_since_statistics: 0, stored_at_statistics: stored };
        Ok((ReaderShare { ids: IdFeed { blocks: receiver }, stored: stored_keys }, writing))
    }

    fn bulk(writing: &Writing) -> bool {
        !writing.deferred_indexes.is_empty()
    }

    fn finish(&self, conn: &mut Conn<'_>, writing: Writing) -> ServiceResult<()> {
        for index in writing.deferred_indexes {
            conn.restore_index(index)?;
        }
        Ok(())
    }

    fn check(
        &self,
        conn: &mut Conn<'_>,
        writing: &mut Writing,
        rows: Vec<Staged<CustomerRow>>,
    ) -> ServiceResult<Checked<CustomerRow>> {
        writing.ids.send_block(conn)?;
        // A bulk load settled duplicates on the reader; so does the Create policy, trivially.
        if self.policy == DuplicatePolicy::Create || !writing.deferred_indexes.is_empty() {
            return Ok((rows, Vec::new()));
        }
        let stored = StoredKeys::load_for(conn, &rows)?;
        let mut keep = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        for mut staged in rows {
            let matched = stored.matching(&staged.row);
            match settle(self.policy, &mut staged.row, matched) {
                Ok(()) => keep.push(staged),
                Err(errors) => rejected.push((staged, errors)),
            }
        }
        Ok((keep, rejected))
    }

    fn write(
        &self,
        conn: &mut Conn<'_>,
        writing: &mut Writing,
        rows: Vec<Staged<CustomerRow>>,
        outcome: &mut BatchOutcome,
    ) -> ServiceResult<()> {
        let (matched, new): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|staged| staged.row.existing.is_some());
        let mut records = Vec::with_capacity(new.len());
        let mut tags = Vec::new();
        let mut consents = Vec::new();
        for staged in new {
            let CustomerRow { draft, record, consents: decisions, .. } = staged.row;
            tags.extend(draft.tags.iter().map(|tag| (record.id, tag.as_str().to_owned())));
            consents.extend(decisions.iter().map(|(channel, granted)| ConsentRecord {
                id: 0,
                customer_id: record.id,
                channel: channel.as_str().to_owned(),
                granted: *granted,
                source: "import".into(),
                recorded_by: self.identity.name.clone(),
                recorded_at_ms: self.now_ms,
            }));
            records.push(record);
        }
        repo::insert_many(conn, &records)?;
        repo::insert_tags_many(conn, &tags, self.now_ms)?;
        repo::insert_consents_many(conn, &consents)?;
        outcome.inserted += records.len() as u64;
        writing.written_since_statistics += records.len() as u64;
        if writing.written_since_statistics >= writing.stored_at_statistics.max(STATISTICS_ROWS_MIN) {
            conn.refresh_statistics("customers")?;
            writing.stored_at_statistics += writing.written_since_statistics;
            writing.written_since_statistics = 0;
        }
        for staged in matched {
            let customer_id = staged.row.existing.unwrap_or_default();
            match self.policy {
                DuplicatePolicy::Update => {
                    self.update_existing(conn, customer_id, &staged.row)?;
                    outcome.updated += 1;
                }
                _ => outcome.skipped += 1,
            }
        }
        Ok(())
    }
}

impl CustomerImport {
    /// Writes a row's non-empty fields over an existing customer; tags are added.
    fn update_existing(&self, conn: &mut Conn<'_>, id: i64, row: &CustomerRow) -> ServiceResult<()> {
        let vault = self.services.vault();
        let Some(before) = repo::get(conn, id)? else { return Err(ServiceError::not_found("customer", id)) };
        let pii = open_pii(vault, &before)?;
        let draft = &row.draft;
        let pick = |new: Option<String>, old: Option<String>| new.or(old);
        let input = CustomerInput {
            name: pick(draft.name.as_ref().map(|name| name.as_str().to_owned()), before.name.clone()),
            gender: Some(if draft.gender.as_str() == "unknown" {
                before.gender.clone()
            } else {
                draft.gender.as_str().to_owned()
            }),
            birthday: pick(draft.birthday.map(|date| date.to_string()), before.birthday.clone()),
            phone: pick(draft.phone.as_ref().map(|phone| phone.as_str().to_owned()), pii.phone.clone()),
            email: pick(draft.email.as_ref().map(|email| email.as_str().to_owned()), pii.email.clone()),
            id_kind: pick(
                draft.id_number.as_ref().map(|id| id.kind().as_str().to_owned()),
                before.id_kind.clone(),
            ),
            id_number: pick(draft.id_number.as_ref().map(|id| id.as_str().to_owned()), pii.id_number.clone()),
            occupation: pick(draft.occupation.clone(), before.occupation.clone()),
            income_band: pick(
                draft.income_band.map(|band| band.as_str().to_owned()),
                before.income_band.clone(),
            ),
            province: pick(draft.province.clone(), before.province.clone()),
            city: pick(draft.city.clone(), before.city.clone()),
            address: pick(draft.address.clone(), pii.address.clone()),
            source_channel: Some(before.source_channel.clone()),
            external_id: pick(before.external_id.clone(), draft.external_id.clone()),
            tags: None,
            preferences: serde_json::from_str(&before.preferences_json).ok(),
        };
        let merged = CustomerDraft::parse(&input, self.today, Channel::Import)?;
        let mut after =
            seal_record(vault, id, &merged, row.record.home_store_id.or(before.home_store_id), self.now_ms);
        after.created_at_ms = before.created_at_ms;
        after.version = before.version + 1;
        if !repo::update(conn, &after, before.version)? {
            return Err(ServiceError::StaleVersion {
                entity: "customer",
                id: id.to_string(),
                current_version: before.version,
            });
        }
        let tags: Vec<String> = draft.tags.iter().map(|tag| tag.as_str().to_owned()).collect();
        repo::add_tags(conn, id, &tags, self.now_ms)?;
        let before_view = crate::customers::view_of(vault, &before, Vec::new(), None, false)?;
        let after_view = crate::customers::view_of(vault, &after, Vec::new(), None, false)?;
        audit::append(
            conn,
            &self.identity,
            self.now_ms,
            "customer.update",
            "customer",
            id,
            audit::snapshot(&before_view),
            audit::snapshot(&after_view),
        )?;
        Ok(())
    }
}
