//! The OpenAPI document: the committed copy is what the code generates, the API serves it, every
//! operation it names is routed, and the answers carry exactly the fields its schemas name.
mod common;

use std::collections::BTreeSet;

use common::Api;
use serde_json::Value;
use wbc_api::openapi::document_text;
use wbc_core::{DeadLetter, ProductInput};

const WIDGET: &str = r#"{"name": "Test Widget", "price": 29.99, "quantity": 100}"#;

fn document() -> Value {
    serde_json::from_str(&document_text()).expect("the document is JSON")
}

/// The property names of a component schema.
fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    let props = doc["components"]["schemas"][schema]["properties"].as_object();
    props.unwrap_or_else(|| panic!("no schema {schema} with properties")).keys().cloned().collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap_or_else(|| panic!("not an object: {value}")).keys().cloned().collect()
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}; run `make openapi`"));
    assert!(committed == document_text(), "api/openapi.json differs from what the code generates; run `make openapi`");
}

#[test]
fn the_schemas_of_types_from_core_name_the_fields_serde_writes() {
    let doc = document();
    let input = ProductInput { name: "a".into(), price: "1".parse().unwrap(), quantity: 1 };
    assert_eq!(properties(&doc, "ProductInput"), keys(&serde_json::to_value(&input).unwrap()));
    let letter = DeadLetter {
        id: "a".into(),
        version: 1,
        deleted: false,
        value: Some(input),
        error: "e".into(),
        attempts: 1,
        failed_at_ms: 1,
    };
    assert_eq!(properties(&doc, "DeadLetter"), keys(&serde_json::to_value(&letter).unwrap()));
    assert_eq!(properties(&doc, "QueueStats"), keys(&serde_json::to_value(wbc_core::QueueStats::default()).unwrap()));
    let replayed = wbc_core::store::Replayed::default();
    assert_eq!(properties(&doc, "Replayed"), keys(&serde_json::to_value(replayed).unwrap()));
}

#[tokio::test]
async fn the_api_serves_the_document_and_its_answers_carry_the_fields_it_names() {
    let api = Api::start(&[]).await;
    let (status, served) = api.call_text("GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(served == document_text(), "GET /openapi.json serves another document");
    let doc = document();
    let (status, product) = api.call("POST", "/products", Some(WIDGET)).await;
    assert_eq!(status, 201, "{product}");
    assert_eq!(keys(&product), properties(&doc, "Product"));
    let (_, deleted) = api.call("DELETE", &format!("/products/{}", product["id"].as_str().unwrap()), None).await;
    assert_eq!(keys(&deleted), properties(&doc, "Deleted"));
    for (uri, schema) in [("/admin/queue", "QueueStats"), ("/admin/config", "Config"), ("/admin/dlq", "DeadLetters")] {
        assert_eq!(keys(&api.call("GET", uri, None).await.1), properties(&doc, schema), "{uri}");
    }
    assert_eq!(keys(&api.call("POST", "/admin/dlq/replay", None).await.1), properties(&doc, "Replayed"));
    let (status, refusal) = api.call("POST", "/products", Some("{}")).await;
    assert_eq!(status, 400);
    assert_eq!(keys(&refusal), properties(&doc, "Refusal"));
}

#[tokio::test]
async fn every_operation_of_the_document_is_routed() {
    let api = Api::start(&[]).await;
    let doc = document();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{id}", "seed-001");
            let body = matches!(method.as_str(), "post" | "put").then_some(WIDGET);
            let (status, json) = api.call(&method.to_uppercase(), &uri, body).await;
            assert!(status != 405 && json["field"] != "path", "{method} {path}: {status} {json}");
            let documented = &item[method]["responses"][status.to_string()];
            assert!(documented.is_object(), "{method} {path} answered {status}, which it does not document");
            operations += 1;
        }
    }
    assert_eq!(operations, 12, "products 4, admin 4, /healthz /readyz /metrics, /openapi.json");
}
