//! The API's OpenAPI 3.1 document, served at `/openapi.json`: built by utoipa from the handlers'
//! `#[utoipa::path]` annotations (their routes are registered from the same annotations, through
//! utoipa-axum, so a route cannot be missing from the document) and from the schemas of `schemas`.
//! `cargo run -p wbc-api --bin openapi` prints it; `make openapi` writes the committed copy, and a
//! test fails when that copy drifts.
mod config;
mod ops;
pub mod schemas;

use std::sync::LazyLock;

use axum::{http::header, response::IntoResponse};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        OpenApi as Document, RefOr, Required,
        link::LinkBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use config::ConfigSchema;
pub use schemas::{
    DeadLetterSchema, FailureSchema, ProductIdSchema, ProductInputSchema, QueueStatsSchema, RefusalSchema,
    ReplayedSchema,
};

use crate::AppState;
use ops::Operational;

/// The security scheme of `/admin/*`: `Authorization: Bearer <ADMIN_TOKEN>`.
pub const ADMIN_TOKEN: &str = "admin_token";
/// The security scheme of `/products`, when `PRODUCTS_TOKEN` is set.
pub const PRODUCTS_TOKEN: &str = "products_token";

#[derive(OpenApi)]
#[openapi(
    info(title = "wbc", description = "A write-behind cache for products, on Redis and PostgreSQL"),
    components(schemas(
        ProductInputSchema,
        QueueStatsSchema,
        DeadLetterSchema,
        ReplayedSchema,
        ConfigSchema,
        RefusalSchema,
        FailureSchema
    )),
    modifiers(&Security, &Operational)
)]
struct ApiDoc;

/// The routes of the API's own handlers, with their part of the document.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::products::router())
        .merge(crate::admin::router())
        .routes(routes!(openapi_json));
    Links.modify(routes.get_openapi_mut());
    optional_body(routes.get_openapi_mut(), "/admin/dlq/replay");
    routes
}

/// Marks the body of `POST path` optional. utoipa makes a body optional only when its type is an
/// `Option`, which also lets it be `null`; a replay's body may be absent, never `null`.
fn optional_body(openapi: &mut Document, path: &str) {
    let post = openapi.paths.paths.get_mut(path).and_then(|item| item.post.as_mut());
    match post.and_then(|operation| operation.request_body.as_mut()) {
        Some(RefOr::T(body)) => body.required = Some(Required::False),
        _ => panic!("POST {path} has no body of its own"),
    }
}

/// The route of `/openapi.json`.
pub(crate) fn router() -> axum::Router<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json)).split_for_parts().0
}

/// The whole document.
pub fn document() -> Document {
    routes().into_openapi()
}

/// The document as the committed copy holds it: pretty JSON and a final newline.
pub fn document_text() -> String {
    let mut text = document().to_pretty_json().expect("the document serializes");
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI document of this API", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    static TEXT: LazyLock<String> = LazyLock::new(document_text);
    ([(header::CONTENT_TYPE, "application/json")], TEXT.as_str())
}

/// Declares the bearer schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme(ADMIN_TOKEN, bearer("ADMIN_TOKEN: required by every /admin endpoint"));
        components.add_security_scheme(
            PRODUCTS_TOKEN,
            bearer("PRODUCTS_TOKEN: required by /products only when it is set (off by default)"),
        );
    }
}

/// Links from the answer of a write to the operations on the product it names, for stateful tests.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut Document) {
        let link = |operation: &str| {
            LinkBuilder::new()
                .operation_id(operation)
                .parameter("id", "$response.body#/id")
                .description(format!("{operation} of the product this answer names"))
                .build()
        };
        for (path, method, status, targets) in [
            ("/products", "post", "201", &["readProduct", "replaceProduct", "deleteProduct"][..]),
            ("/products/{id}", "put", "200", &["readProduct", "replaceProduct", "deleteProduct"][..]),
            ("/products/{id}", "delete", "200", &["readProduct", "replaceProduct"][..]),
        ] {
            let item = openapi.paths.paths.get_mut(path).unwrap_or_else(|| panic!("no path {path}"));
            let operation = match method {
                "post" => item.post.as_mut(),
                "put" => item.put.as_mut(),
                _ => item.delete.as_mut(),
            };
            let operation = operation.unwrap_or_else(|| panic!("no {method} {path}"));
            let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else {
                panic!("{method} {path} has no {status} answer");
            };
            for target in targets {
                response.links.insert(target.to_string(), link(target).into());
            }
        }
    }
}
