//! The operational endpoints in the document. `wbc_core::ops` serves them (the worker does too), so
//! they are described here with utoipa's builders rather than annotated where they are handled.
use utoipa::{
    Modify,
    openapi::{
        ContentBuilder, HttpMethod, ObjectBuilder, OpenApi, PathItem, Type,
        path::OperationBuilder,
        response::{ResponseBuilder, ResponsesBuilder},
        schema::{AdditionalProperties, SchemaType},
    },
};

/// Adds `/healthz`, `/readyz` and `/metrics`.
pub struct Operational;

fn text() -> ContentBuilder {
    ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String)))
}

fn get(id: &str, summary: &str, responses: ResponsesBuilder) -> PathItem {
    let operation = OperationBuilder::new()
        .operation_id(Some(id))
        .tag("operations")
        .summary(Some(summary))
        .responses(responses.build());
    PathItem::new(HttpMethod::Get, operation)
}

/// `/readyz`'s body: whether the API takes requests, and the state of each store.
fn readiness() -> ContentBuilder {
    let state = || ObjectBuilder::new().schema_type(Type::String).description(Some("`ok`, or why not"));
    let flag = || ObjectBuilder::new().schema_type(Type::Boolean);
    let body = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("ready", flag())
        .required("ready")
        .property("draining", flag().description(Some("Shutting down: still serving, no longer ready")))
        .required("draining")
        .property("redis", state())
        .required("redis")
        .property("postgres", state())
        .required("postgres")
        .property("data_loss", data_loss())
        .required("data_loss")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    ContentBuilder::new().schema(Some(body))
}

/// `/readyz`'s record of the losses of Redis data (`wbc_core::db::DataLosses`), null while PostgreSQL
/// does not answer.
fn data_loss() -> ObjectBuilder {
    let count = |nullable: bool| {
        let type_ = if nullable { SchemaType::from_iter([Type::Integer, Type::Null]) } else { Type::Integer.into() };
        ObjectBuilder::new().schema_type(type_).minimum(Some(0))
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(
            "The losses of Redis data detected so far (durable, in PostgreSQL); null while PostgreSQL does not answer",
        ))
        .property("count", count(false).description(Some("Losses detected so far")))
        .required("count")
        .property(
            "last_detected_at_ms",
            count(true).description(Some("When the last one was detected (ms since the epoch), or null")),
        )
        .required("last_detected_at_ms")
        .property(
            "at_least_writes",
            count(false).description(Some("A lower bound of the writes Redis forgot, summed over the losses")),
        )
        .required("at_least_writes")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

impl Modify for Operational {
    fn modify(&self, openapi: &mut OpenApi) {
        let healthz = ResponsesBuilder::new().response(
            "200",
            ResponseBuilder::new().description("The process is alive").content("text/plain", text().build()),
        );
        let ready = |description: &str| {
            ResponseBuilder::new().description(description).content("application/json", readiness().build())
        };
        let readyz = ResponsesBuilder::new()
            .response("200", ready("Redis or PostgreSQL answers, and the process is not shutting down"))
            .response("503", ready("Neither store answers, or the process is shutting down"));
        let metrics = ResponsesBuilder::new().response(
            "200",
            ResponseBuilder::new()
                .description("Prometheus text exposition")
                .content(prometheus::TEXT_FORMAT, text().build()),
        );
        for (path, item) in [
            ("/healthz", get("healthz", "Liveness", healthz)),
            ("/readyz", get("readyz", "Readiness", readyz)),
            ("/metrics", get("metrics", "Prometheus metrics", metrics)),
        ] {
            openapi.paths.paths.insert(path.to_owned(), item);
        }
    }
}
