//! Customer profile values and the parsing of a whole profile from raw input, shared by the
//! API and the importer so both accept and reject exactly the same things.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::{
    date,
    email::Email,
    error::{FieldError, FieldErrors},
    id_number::{IdKind, IdNumber},
    limits,
    phone::Phone,
    text,
};

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($variant:ident => $code:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            pub fn parse(raw: &str) -> Result<Self, FieldError> {
                let cleaned = text::clean(raw).unwrap_or_default().to_lowercase();
                match cleaned.as_str() {
                    $($code $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(FieldError::new(
                        $field,
                        concat!($field, ".invalid"),
                        format!("`{}` is not one of: {}", raw, [$($code),+].join(", ")),
                    )),
                }
            }
        }
    };
}

code_enum!(
    /// Gender as recorded; `unknown` when not given.
    Gender, "gender", {
        Male => "male" | "m" | "男" | "1" | "先生",
        Female => "female" | "f" | "女" | "2" | "女士",
        Unknown => "unknown" | "u" | "未知" | "0" | "",
    }
);

code_enum!(
    /// Monthly income band, in yuan.
    IncomeBand, "income_band", {
        Below5k => "below_5k" | "<5k" | "5千以下" | "5000以下",
        From5kTo10k => "5k_10k" | "5k-10k" | "5000-10000" | "5千-1万",
        From10kTo20k => "10k_20k" | "10k-20k" | "10000-20000" | "1万-2万",
        From20kTo50k => "20k_50k" | "20k-50k" | "20000-50000" | "2万-5万",
        Above50k => "above_50k" | ">50k" | "5万以上" | "50000以上",
    }
);

code_enum!(
    /// Where a customer or an event came from (线上线下整合: one profile across channels).
    Channel, "channel", {
        Store => "store" | "门店" | "offline",
        OnlineShop => "online_shop" | "网店" | "商城" | "online" | "线上",
        App => "app",
        Wechat => "wechat" | "微信" | "小程序" | "mini_program",
        Partner => "partner" | "合作方" | "联名",
        Phone => "phone" | "电话" | "call_center",
        Email => "email" | "邮件",
        Import => "import" | "导入",
        Other => "other" | "其他",
    }
);

code_enum!(
    /// A way to reach a customer for marketing; consent is recorded per channel (PIPL).
    ConsentChannel, "consent_channel", {
        Sms => "sms" | "短信",
        Email => "email" | "邮件",
        Phone => "phone" | "电话",
        Wechat => "wechat" | "微信",
        AppPush => "app_push" | "push",
        Post => "post" | "mail" | "邮寄",
    }
);

code_enum!(
    /// Behaviour recorded on the customer timeline.
    EventKind, "kind", {
        Visit => "visit" | "到店",
        Browse => "browse" | "浏览",
        AppOpen => "app_open" | "app",
        Social => "social" | "社交",
        Call => "call" | "来电" | "去电",
        Email => "email",
        Message => "message" | "消息",
        Meeting => "meeting" | "面谈",
        Note => "note" | "备注",
        Other => "other",
    }
);

/// A customer's name: cleaned, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerName(String);

impl CustomerName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned =
            text::clean(raw).ok_or_else(|| FieldError::new("name", "name.empty", "the name is empty"))?;
        if text::char_count(&cleaned) > limits::NAME_LENGTH_MAX {
            return Err(FieldError::new(
                "name",
                "name.too_long",
                format!("the name is longer than {} characters", limits::NAME_LENGTH_MAX),
            ));
        }
        Ok(Self(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag: cleaned, 1 to 32 characters, no separators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned =
            text::clean(raw).ok_or_else(|| FieldError::new("tags", "tag.empty", "a tag is empty"))?;
        if text::char_count(&cleaned) > limits::TAG_LENGTH_MAX {
            return Err(FieldError::new(
                "tags",
                "tag.too_long",
                format!("tag `{cleaned}` is longer than {} characters", limits::TAG_LENGTH_MAX),
            ));
        }
        if cleaned.contains([',', ';', '|', '，', '；']) {
            return Err(FieldError::new(
                "tags",
                "tag.invalid",
                format!("tag `{cleaned}` contains a separator"),
            ));
        }
        Ok(Self(cleaned))
    }

    /// Splits a list written in one spreadsheet cell: `vip, 咖啡；甜品|new`.
    pub fn split_cell(raw: &str) -> Vec<String> {
        raw.split([',', ';', '|', '，', '；'])
            .filter(|part| text::clean(part).is_some())
            .map(str::to_owned)
            .collect()
    }

    /// Parses a list of tags, dropping repeats, bounded in count.
    pub fn parse_list(raw: &[String]) -> Result<Vec<Self>, FieldError> {
        let mut tags: Vec<Tag> = raw.iter().map(|tag| Tag::parse(tag)).collect::<Result<_, _>>()?;
        tags.sort();
        tags.dedup();
        if tags.len() > limits::TAGS_PER_CUSTOMER_MAX {
            return Err(FieldError::new(
                "tags",
                "tags.too_many",
                format!("more than {} tags", limits::TAGS_PER_CUSTOMER_MAX),
            ));
        }
        Ok(tags)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Optional free text bounded in length (occupation, city, address).
pub fn parse_bounded_text(field: &str, raw: &str, length_max: usize) -> Result<Option<String>, FieldError> {
    match text::clean(raw) {
        None => Ok(None),
        Some(cleaned) if text::char_count(&cleaned) > length_max => Err(FieldError::new(
            field,
            "text.too_long",
            format!("{field} is longer than {length_max} characters"),
        )),
        Some(cleaned) => Ok(Some(cleaned)),
    }
}

/// An identifier in another system (POS member number, online shop user id).
pub fn parse_external_id(raw: &str) -> Result<Option<String>, FieldError> {
    match text::clean(raw) {
        None => Ok(None),
        Some(cleaned) if cleaned.len() > limits::EXTERNAL_ID_LENGTH_MAX => Err(FieldError::new(
            "external_id",
            "external_id.too_long",
            format!("external_id is longer than {} bytes", limits::EXTERNAL_ID_LENGTH_MAX),
        )),
        Some(cleaned) => Ok(Some(cleaned)),
    }
}

/// Raw profile fields as they arrive from a form, a JSON body or a spreadsheet row. Empty
/// strings mean "not given".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerInput {
    pub name: Option<String>,
    pub gender: Option<String>,
    pub birthday: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub id_kind: Option<String>,
    pub id_number: Option<String>,
    pub occupation: Option<String>,
    pub income_band: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub source_channel: Option<String>,
    pub external_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub preferences: Option<BTreeMap<String, String>>,
}

/// A profile whose every field is valid and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerDraft {
    pub name: Option<CustomerName>,
    pub gender: Gender,
    pub birthday: Option<Date>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub id_number: Option<IdNumber>,
    pub occupation: Option<String>,
    pub income_band: Option<IncomeBand>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub source_channel: Channel,
    pub external_id: Option<String>,
    pub tags: Vec<Tag>,
    pub preferences: BTreeMap<String, String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|text| text::clean(text).is_some())
}

/// Checks preference entries: bounded count, keys and values.
pub fn parse_preferences(raw: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, FieldError> {
    if raw.len() > limits::PREFERENCES_MAX {
        return Err(FieldError::new(
            "preferences",
            "preferences.too_many",
            format!("more than {} preferences", limits::PREFERENCES_MAX),
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let key_clean = text::clean(key).filter(|key| key.len() <= 64).ok_or_else(|| {
            FieldError::new(
                "preferences",
                "preferences.key_invalid",
                format!("preference key `{key}` is empty or longer than 64 bytes"),
            )
        })?;
        let value_clean = text::clean(value).unwrap_or_default();
        if text::char_count(&value_clean) > limits::PREFERENCE_VALUE_LENGTH_MAX {
            return Err(FieldError::new(
                "preferences",
                "preferences.value_too_long",
                format!(
                    "preference `{key}` is longer than {} characters",
                    limits::PREFERENCE_VALUE_LENGTH_MAX
                ),
            ));
        }
        out.insert(key_clean, value_clean);
    }
    Ok(out)
}

impl CustomerDraft {
    /// Parses every field, collecting all problems. `today` bounds birthdays; `default_channel`
    /// is used when no source channel is given. Gaps are filled from a resident ID number
    /// (birthday, gender) and a contradiction between them is an error.
    pub fn parse(input: &CustomerInput, today: Date, default_channel: Channel) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = given(&input.name).and_then(|raw| errors.take("name", CustomerName::parse(raw)));
        let gender = given(&input.gender).and_then(|raw| errors.take("gender", Gender::parse(raw)));
        let birthday =
            given(&input.birthday).and_then(|raw| errors.take("birthday", date::parse_birthday(raw, today)));
        let phone = given(&input.phone).and_then(|raw| errors.take("phone", Phone::parse(raw)));
        let email = given(&input.email).and_then(|raw| errors.take("email", Email::parse(raw)));
        let id_kind = match given(&input.id_kind) {
            Some(raw) => errors.take("id_kind", IdKind::parse(raw)),
            None => Some(IdKind::ResidentId),
        };
        let id_number = match (given(&input.id_number), id_kind) {
            (Some(raw), Some(kind)) => errors.take("id_number", IdNumber::parse(kind, raw)),
            _ => None,
        };
        let occupation = input
            .occupation
            .as_deref()
            .and_then(|raw| {
                errors.take("occupation", parse_bounded_text("occupation", raw, limits::TEXT_LENGTH_MAX))
            })
            .flatten();
        let income_band =
            given(&input.income_band).and_then(|raw| errors.take("income_band", IncomeBand::parse(raw)));
        let province = input
            .province
            .as_deref()
            .and_then(|raw| {
                errors.take("province", parse_bounded_text("province", raw, limits::TEXT_LENGTH_MAX))
            })
            .flatten();
        let city = input
            .city
            .as_deref()
            .and_then(|raw| errors.take("city", parse_bounded_text("city", raw, limits::TEXT_LENGTH_MAX)))
            .flatten();
        let address = input
            .address
            .as_deref()
            .and_then(|raw| {
                errors.take("address", parse_bounded_text("address", raw, limits::ADDRESS_LENGTH_MAX))
            })
            .flatten();
        let source_channel = match given(&input.source_channel) {
            Some(raw) => errors.take("source_channel", Channel::parse(raw)).unwrap_or(default_channel),
            None => default_channel,
        };
        let external_id = input
            .external_id
            .as_deref()
            .and_then(|raw| errors.take("external_id", parse_external_id(raw)))
            .flatten();
        let tags = input
            .tags
            .as_deref()
            .and_then(|raw| errors.take("tags", Tag::parse_list(raw)))
            .unwrap_or_default();
        let preferences = input
            .preferences
            .as_ref()
            .and_then(|raw| errors.take("preferences", parse_preferences(raw)))
            .unwrap_or_default();

        if name.is_none() && phone.is_none() && email.is_none() && errors.is_empty() {
            errors.push(FieldError::new(
                "name",
                "customer.unidentified",
                "give at least a name, a phone or an e-mail",
            ));
        }
        let mut birthday = birthday;
        let mut gender = gender;
        if let Some(id) = &id_number {
            match (id.birth_date(), birthday) {
                (Some(from_id), Some(given)) if from_id != given => errors.push(FieldError::new(
                    "birthday",
                    "birthday.mismatch",
                    format!("birthday {given} does not match the ID number's {from_id}"),
                )),
                (Some(from_id), None) => birthday = Some(from_id),
                _ => {}
            }
            match (id.gender(), gender) {
                (Some(from_id), Some(given)) if given != Gender::Unknown && from_id != given => {
                    errors.push(FieldError::new(
                        "gender",
                        "gender.mismatch",
                        format!(
                            "gender {} does not match the ID number's {}",
                            given.as_str(),
                            from_id.as_str()
                        ),
                    ))
                }
                (Some(from_id), None | Some(Gender::Unknown)) => gender = Some(from_id),
                _ => {}
            }
        }
        errors.into_result(|| Self {
            name,
            gender: gender.unwrap_or(Gender::Unknown),
            birthday,
            phone,
            email,
            id_number,
            occupation,
            income_band,
            province,
            city,
            address,
            source_channel,
            external_id,
            tags,
            preferences,
        })
    }
}

/// Masks an address: the first six characters (usually province and city) then `****`.
pub fn mask_address(address: &str) -> String {
    let shown: String = address.chars().take(6).collect();
    format!("{shown}****")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn input() -> CustomerInput {
        CustomerInput {
            name: Some(" 张三 ".into()),
            phone: Some("138 1234 5678".into()),
            id_number: Some("11010519491231002X".into()),
            tags: Some(Tag::split_cell("vip，咖啡; vip")),
            ..CustomerInput::default()
        }
    }

    #[test]
    fn a_profile_is_normalised_and_gaps_filled_from_the_id_number() {
        let draft = CustomerDraft::parse(&input(), date(2026, 11, 22), Channel::Store).unwrap();
        assert_eq!(draft.name.unwrap().as_str(), "张三");
        assert_eq!(draft.phone.unwrap().as_str(), "+8613812345678");
        assert_eq!(draft.birthday, Some(date(1949, 12, 31)));
        assert_eq!(draft.gender, Gender::Female);
        assert_eq!(draft.tags.iter().map(Tag::as_str).collect::<Vec<_>>(), vec!["vip", "咖啡"]);
        assert_eq!(draft.source_channel, Channel::Store);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let bad = CustomerInput {
            phone: Some("12345".into()),
            email: Some("nope".into()),
            birthday: Some("1990-02-30".into()),
            gender: Some("x".into()),
            ..input()
        };
        let errors = CustomerDraft::parse(&bad, date(2026, 11, 22), Channel::Store).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, vec!["gender", "birthday", "phone", "email"]);
    }

    #[test]
    fn contradictions_with_the_id_number_are_errors() {
        let bad =
            CustomerInput { birthday: Some("1950-01-01".into()), gender: Some("男".into()), ..input() };
        let errors = CustomerDraft::parse(&bad, date(2026, 11, 22), Channel::Store).unwrap_err();
        let codes: Vec<&str> = errors.0.iter().map(|error| error.code).collect();
        assert_eq!(codes, vec!["birthday.mismatch", "gender.mismatch"]);
    }

    #[test]
    fn a_profile_needs_something_to_identify_it() {
        let empty = CustomerInput { occupation: Some("teacher".into()), ..CustomerInput::default() };
        let errors = CustomerDraft::parse(&empty, date(2026, 11, 22), Channel::Store).unwrap_err();
        assert_eq!(errors.0[0].code, "customer.unidentified");
    }

    #[test]
    fn enum_aliases() {
        assert_eq!(Gender::parse("女").unwrap(), Gender::Female);
        assert_eq!(Channel::parse("微信").unwrap(), Channel::Wechat);
        assert_eq!(IncomeBand::parse("1万-2万").unwrap(), IncomeBand::From10kTo20k);
        assert_eq!(Channel::parse("fax").unwrap_err().code, "channel.invalid");
    }
}
