//! Schemas of the bodies whose types live in `wbc-core`, or whose rules are constants there: utoipa's
//! derive takes literals only, so these are built from the same constants and predicates that the
//! validation uses (`product::MAX_NAME_CHARS`, `Price::MAX_CENTS`, `char::is_control`, …), never from
//! numbers copied by hand. Tests compare each object's properties with what serde writes.
use std::borrow::Cow;

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, RefOr, Schema, SchemaFormat, Type,
        schema::{AdditionalProperties, SchemaType},
    },
};
use wbc_core::{Price, product};

/// A string of `min..=max` characters.
fn text(min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(min)).max_length(Some(max))
}

/// An integer from `min` to `max`.
pub fn integer(min: i64, max: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
}

/// A count that only grows from 0.
fn count() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
}

/// An object with exactly `fields`, each required unless it is `nullable`.
fn strict(description: &str, fields: Vec<(&str, RefOr<Schema>)>) -> ObjectBuilder {
    fields
        .into_iter()
        .fold(
            ObjectBuilder::new().schema_type(Type::Object).description(Some(description)),
            |object, (name, schema)| object.property(name, schema).required(name),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// A count, or `null`.
fn count_or_null() -> ObjectBuilder {
    count().schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
}

/// A regex character class of the characters `keep` refuses (`\u0000-\u001F…`), computed from the
/// predicate itself so that the pattern and the validation cannot disagree.
fn class_of(refused: impl Fn(char) -> bool) -> String {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=char::MAX as u32).filter_map(char::from_u32).filter(|&c| refused(c)) {
        match ranges.last_mut() {
            Some((_, end)) if *end as u32 + 1 == c as u32 => *end = c,
            _ => ranges.push((c, c)),
        }
    }
    let escape = |c: char| format!("\\u{:04X}", c as u32);
    ranges
        .into_iter()
        .map(|(start, end)| match start == end {
            true => escape(start),
            false => format!("{}-{}", escape(start), escape(end)),
        })
        .collect()
}

/// `name`'s rule as a pattern: no control character anywhere, and at least one that is not blank.
pub fn name_pattern() -> String {
    let any = format!("[^{}]", class_of(char::is_control));
    let visible = format!("[^{}]", class_of(|c| c.is_control() || c.is_whitespace()));
    format!("^{any}*{visible}{any}*$")
}

/// `id`'s rule as a pattern; its length is `min_length`/`max_length`.
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]*$";

/// A product id (path parameter and field).
pub fn id() -> ObjectBuilder {
    text(1, product::MAX_ID_LEN)
        .pattern(Some(ID_PATTERN))
        .description(Some("1 to 64 characters of A-Z a-z 0-9 _ - ., starting with a letter or digit"))
}

/// A product's name.
pub fn name() -> ObjectBuilder {
    text(1, product::MAX_NAME_CHARS)
        .pattern(Some(name_pattern()))
        .description(Some("1 to 200 characters, not blank, no control characters"))
}

/// A price: money with two decimals, exactly what `NUMERIC(12, 2)` holds.
pub fn price() -> ObjectBuilder {
    let number = |cents| -> f64 {
        let price = Price::from_cents(cents).expect("a price");
        price.to_string().parse().expect("a price is a number")
    };
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0))
        .maximum(Some(number(Price::MAX_CENTS)))
        .multiple_of(Some(number(1)))
        .description(Some(
            "Money with at most two decimals, read from the number's own text (any spelling: 1e2 is 100.00); \
             answers write it with exactly two (29.90)",
        ))
}

/// A product's quantity.
pub fn quantity() -> ObjectBuilder {
    integer(0, product::MAX_QUANTITY)
}

/// A version: above every earlier version of its key.
pub fn version() -> ObjectBuilder {
    integer(1, i64::MAX).description(Some("Strictly greater than every earlier version of the key"))
}

/// Schemas that serialize a type of `wbc-core` (or rules of it) under a name of their own.
macro_rules! named_schema {
    ($(#[$doc:meta])* $marker:ident, $name:literal, $build:expr) => {
        $(#[$doc])*
        pub struct $marker;

        impl PartialSchema for $marker {
            fn schema() -> RefOr<Schema> {
                $build.into()
            }
        }

        impl ToSchema for $marker {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

named_schema!(
    /// `ProductInput`: the body of `POST /products` and `PUT /products/{id}`.
    ProductInputSchema,
    "ProductInput",
    strict(
        "A product: exactly these fields",
        vec![("name", name().into()), ("price", price().into()), ("quantity", quantity().into())]
    )
);

named_schema!(
    /// A product's id, in a path.
    ProductIdSchema,
    "ProductId",
    id()
);

named_schema!(
    /// `QueueStats`: `/admin/queue`.
    QueueStatsSchema,
    "QueueStats",
    strict(
        "The write queue",
        vec![
            ("queue_size", count().description(Some("Dirty keys waiting for a flush")).into()),
            ("in_flight", count().description(Some("Keys a worker has claimed and not yet acknowledged")).into()),
            ("dead_letters", count().description(Some("Records in the dead-letter list")).into()),
            (
                "oldest_unpersisted_age_ms",
                count_or_null().description(Some("Age of the oldest write not yet in PostgreSQL")).into()
            ),
            (
                "last_data_loss_at_ms",
                count_or_null().description(Some("When a loss of Redis data was last detected, Unix ms")).into()
            ),
        ]
    )
);

named_schema!(
    /// `DeadLetter`: one record of `/admin/dlq`.
    DeadLetterSchema,
    "DeadLetter",
    strict(
        "A record that kept failing",
        vec![
            ("id", id().into()),
            ("version", version().into()),
            ("deleted", ObjectBuilder::new().schema_type(Type::Boolean).into()),
            (
                "value",
                OneOfBuilder::new()
                    .item(Ref::from_schema_name("ProductInput"))
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .description(Some("The product; null for a tombstone or a value that could not be decoded"))
                    .into()
            ),
            ("error", ObjectBuilder::new().schema_type(Type::String).description(Some("The last error")).into()),
            ("attempts", count().into()),
            ("failed_at_ms", count().description(Some("Unix ms")).into()),
        ]
    )
);

/// The dead letters of a listing.
pub fn dead_letter_list() -> ArrayBuilder {
    ArrayBuilder::new().items(Ref::from_schema_name("DeadLetter"))
}

named_schema!(
    /// `Replayed`: what `POST /admin/dlq/replay` did.
    ReplayedSchema,
    "Replayed",
    strict(
        "What a replay did",
        vec![
            ("queued", count().description(Some("Records queued again")).into()),
            ("superseded", count().description(Some("Records dropped: a newer version exists")).into()),
            ("kept", count().description(Some("Records left in the list")).into()),
        ]
    )
);

named_schema!(
    /// The error body of a refused request (4xx): the reason and the field, header or part refused.
    RefusalSchema,
    "Refusal",
    strict(
        "A refused request",
        vec![
            ("error", ObjectBuilder::new().schema_type(Type::String).description(Some("`field: reason`")).into()),
            (
                "field",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .description(Some("What is refused: a field of the body, `id`, `limit`, `query`, `body`, `content-type`, `authorization`, `method`, `path`, `request`"))
                    .into()
            ),
        ]
    )
);

named_schema!(
    /// The error body of an answer the server could not give (5xx).
    FailureSchema,
    "Failure",
    strict(
        "The server could not answer; details are logged, not returned",
        vec![("error", ObjectBuilder::new().schema_type(Type::String).into())]
    )
);
