//! The operational endpoints in the document. `wbc_core::ops` serves them (the worker does too), so
//! they are described here with utoipa's builders rather than annotated where they are handled.
use utoipa::{
    Modify,
    openapi::{
        ContentBuilder, HttpMethod, ObjectBuilder, OpenApi, PathItem, Type,
        path::OperationBuilder,
        response::{ResponseBuilder, ResponsesBuilder},
        schema::AdditionalProperties,
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
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    ContentBuilder::new().schema(Some(body))
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
