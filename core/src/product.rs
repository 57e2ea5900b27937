//! Products, their validation and their versioned records.
use serde::{Deserialize, Serialize};

use crate::{Error, Price, Result};

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest quantity that the `INTEGER` column holds.
pub const MAX_QUANTITY: i64 = i32::MAX as i64;
/// Longest product id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The body of `POST /products` and `PUT /products/{id}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// 1 to 200 characters, not blank, no control characters.
    pub name: String,
    /// Exact, as the client wrote it (see `price`).
    pub price: Price,
    /// 0 to `MAX_QUANTITY`, in any spelling of an integer (see `quantity_of_text`).
    #[serde(deserialize_with = "quantity_of_text")]
    pub quantity: i64,
}

/// A quantity from the text of a JSON number: JSON has one kind of number, so `30648.0` and `3e2` are
/// integers as much as `30648` is (as JSON Schema's `integer` says), and are read exactly.
fn quantity_of_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<i64, D::Error> {
    use crate::price::NotExact;
    let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
    let digits = MAX_QUANTITY.to_string().len() as i64;
    let reason = match crate::price::scaled(raw.get(), 0, digits) {
        Ok(quantity) if quantity <= MAX_QUANTITY => return Ok(quantity),
        Ok(_) | Err(NotExact::TooLarge) => format!("must be at most {MAX_QUANTITY}"),
        Err(NotExact::Negative) => "must not be negative".to_owned(),
        Err(NotExact::NotANumber | NotExact::TooPrecise) => "must be an integer".to_owned(),
    };
    Err(serde::de::Error::custom(reason))
}

/// One versioned state of a key: a product, or a tombstone where `deleted` is set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Record {
    /// The product's id.
    pub id: String,
    /// Empty for a tombstone.
    pub name: String,
    /// 0.00 for a tombstone.
    pub price: Price,
    /// 0 for a tombstone.
    pub quantity: i64,
    /// Strictly greater than every earlier version of the key.
    pub version: i64,
    /// A tombstone: the product was deleted at `version`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Record {
    /// A live product at `version`.
    pub fn product(id: &str, input: ProductInput, version: i64) -> Self {
        Self {
            id: id.to_owned(),
            name: input.name,
            price: input.price,
            quantity: input.quantity,
            version,
            deleted: false,
        }
    }

    /// The product fields of a live record.
    pub fn input(&self) -> ProductInput {
        ProductInput { name: self.name.clone(), price: self.price, quantity: self.quantity }
    }

    /// A tombstone at `version`.
    pub fn tombstone(id: &str, version: i64) -> Self {
        Self { id: id.to_owned(), name: String::new(), price: Price::ZERO, quantity: 0, version, deleted: true }
    }
}

/// Parses and validates a JSON body that is exactly one JSON value; errors name the offending
/// field, or `body`.
pub fn parse_input(body: &[u8]) -> Result<ProductInput> {
    let input: ProductInput = parse_json(body)?;
    input.validate()?;
    Ok(input)
}

/// Parses a JSON body that is exactly one JSON value of `T`; errors name the offending field, or
/// `body`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    // serde also reads a struct from an array of its fields (`["Widget", 1, 1]`); a body is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Err(Error::invalid("body", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match path.as_str() {
            "." | "?" | "" => {
                let msg = inner.to_string();
                Error::invalid(field_in_message(&msg).unwrap_or_else(|| "body".to_owned()), msg)
            }
            // The field is named; where in the body it sits adds nothing.
            p => Error::invalid(p, without_position(&inner)),
        }
    })?;
    // Anything but whitespace after the value makes the body something other than one JSON value.
    de.end().map_err(|e| Error::invalid("body", e.to_string()))?;
    Ok(value)
}

/// An error's message without the " at line 1 column 30" that serde_json adds.
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    msg.strip_suffix(&position).map(str::to_owned).unwrap_or(msg)
}

/// serde reports missing and unknown fields at the parent path; the name is in the message (a
/// field without a name is the body's fault).
fn field_in_message(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned()).filter(|name| !name.is_empty())
}

impl ProductInput {
    /// Checks the value rules that types alone do not express (a `Price` is valid by construction).
    pub fn validate(&self) -> Result<()> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        if self.name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::invalid("name", format!("must be at most {MAX_NAME_CHARS} characters")));
        }
        if self.name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must not contain control characters"));
        }
        if self.quantity < 0 {
            return Err(Error::invalid("quantity", "must not be negative"));
        }
        if self.quantity > MAX_QUANTITY {
            return Err(Error::invalid("quantity", format!("must be at most {MAX_QUANTITY}")));
        }
        Ok(())
    }
}

/// Checks a product id: 1 to 64 of `A-Z a-z 0-9 _ - .`, starting with a letter or digit.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "id",
            format!("must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 _ - . starting with a letter or digit"),
        ))
    }
}

/// A fresh random product id: a v4 UUID from the thread's CSPRNG, which asks the OS only to
/// reseed, where `Uuid::new_v4` makes a system call for each id.
pub fn new_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().hyphenated().encode_lower(&mut buf).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match parse_input(body.as_bytes()) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{body} gave {other:?}"),
        }
    }

    #[test]
    fn a_valid_body_parses() {
        let p = parse_input(br#"{"name":"Test Widget","price":29.99,"quantity":100}"#).unwrap();
        assert_eq!(p, ProductInput { name: "Test Widget".into(), price: "29.99".parse().unwrap(), quantity: 100 });
    }

    #[test]
    fn a_body_is_exactly_one_json_value() {
        let widget = r#"{"name":"a","price":1,"quantity":1}"#;
        for trailing in [" trailing", " 1", "]", "}", widget, "\u{0}"] {
            assert_eq!(field_of(&format!("{widget}{trailing}")), "body", "{trailing}");
        }
        assert!(parse_input(format!(" \n{widget}\r\n\t ").as_bytes()).is_ok(), "whitespace around it is JSON");
    }

    #[test]
    fn a_price_is_read_from_the_numbers_own_text() {
        let price = |text: &str| parse_input(format!(r#"{{"name":"a","price":{text},"quantity":1}}"#).as_bytes());
        assert_eq!(price("1e2").unwrap().price.to_string(), "100.00");
        assert_eq!(price("-0.0").unwrap().price.to_string(), "0.00");
        for refused in ["123456789.125", "99999999.994", "29.990000000001", "19.999", "-0.01", "1e10"] {
            match price(refused) {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "price", "{refused}");
                    assert!(!reason.contains("line"), "a named field needs no position: {reason}");
                }
                other => panic!("{refused} gave {other:?}"),
            }
        }
    }

    #[test]
    fn each_bad_body_names_its_field() {
        assert_eq!(field_of(r#"{"price":1,"quantity":1}"#), "name");
        assert_eq!(field_of(r#"{"name":"a","price":1,"quantity":1,"colour":"red"}"#), "colour");
        assert_eq!(field_of(r#"{"name":"  ","price":1,"quantity":1}"#), "name");
        assert_eq!(field_of(&format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "x".repeat(201))), "name");
        assert_eq!(field_of(r#"{"name":"a","price":-1,"quantity":1}"#), "price");
        assert_eq!(field_of(r#"{"name":"a","price":"1","quantity":1}"#), "price");
        assert_eq!(field_of(r#"{"name":"a","price":1e400,"quantity":1}"#), "price");
        assert_eq!(field_of(r#"{"name":"a","price":1.001,"quantity":1}"#), "price");
        assert_eq!(field_of(r#"{"name":"a","price":1,"quantity":-1}"#), "quantity");
        assert_eq!(field_of(r#"{"name":"a","price":1,"quantity":1.5}"#), "quantity");
        assert_eq!(field_of(r#"{"name":"a","price":1,"quantity":1"#), "body");
        assert_eq!(field_of("[]"), "body");
    }

    #[test]
    fn names_of_exactly_200_characters_are_fine() {
        let body = format!(r#"{{"name":"{}","price":0,"quantity":0}}"#, "é".repeat(200));
        assert!(parse_input(body.as_bytes()).is_ok());
    }

    #[test]
    fn ids_are_checked() {
        for ok in ["seed-001", "a", "0f8e0c1e-aaaa-4bbb-8ccc-123456789abc", "A.b_c"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
