//! Thousands of generated bad requests: each gets a 4xx, none a 5xx, and no data changes.
mod common;

use axum::{body::Body, http::Request};
use common::Api;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

const REQUESTS: usize = 3000;

fn valid() -> Value {
    json!({ "name": "Widget", "price": 12.5, "quantity": 3 })
}

/// A body that breaks exactly one rule, chosen at random.
fn bad_body(rng: &mut StdRng) -> Vec<u8> {
    let mut v = valid();
    let field = *["name", "price", "quantity"].choose(rng).unwrap();
    let junk: Vec<Value> = vec![json!(null), json!(true), json!([1]), json!({"a": 1}), json!("12")];
    match rng.random_range(0..13) {
        0 => {
            let n = rng.random_range(1..200);
            return (0..n).map(|_| rng.random::<u8>()).chain([0xff]).collect();
        }
        1 => {
            let s = v.to_string();
            return s.as_bytes()[..rng.random_range(0..s.len() - 1)].to_vec();
        }
        2 => {
            v.as_object_mut().unwrap().remove(field);
        }
        3 => {
            v[format!("extra{}", rng.random::<u16>())] = json!(1);
        }
        4 if field == "name" => v[field] = json!(1),
        4 => v[field] = junk.choose(rng).unwrap().clone(),
        5 => v["name"] = json!(" ".repeat(rng.random_range(0..5))),
        6 => v["name"] = json!("n".repeat(rng.random_range(201..2000))),
        7 => v["name"] = json!(format!("bad{}name", char::from(rng.random_range(0u8..0x20)))),
        8 => v["price"] = json!(-rng.random_range(0.01..1e9)),
        9 => v["price"] = json!(rng.random_range(1e10..1e300)),
        10 => v["quantity"] = json!(-rng.random_range(1..i64::MAX)),
        11 => return format!("{v}{}", [" trailing", "}", "]", " 1", "{}"].choose(rng).unwrap()).into_bytes(),
        _ => v["quantity"] = json!(rng.random_range(0..1000) as f64 + 0.5),
    }
    v.to_string().into_bytes()
}

fn bad_id(rng: &mut StdRng) -> String {
    let ids = ["-lead", "a%20b", "a%2Fb", "%C3%A9t%C3%A9", "..", "a:b", "a%00b", "%25"];
    match rng.random_range(0..3) {
        0 => "x".repeat(rng.random_range(65..300)),
        _ => ids.choose(rng).unwrap().to_string(),
    }
}

fn bad_request(rng: &mut StdRng) -> Request<Body> {
    match rng.random_range(0..8) {
        0 => Request::get(format!("/products/{}", bad_id(rng))).body(Body::empty()).unwrap(),
        1 => Request::delete(format!("/products/{}", bad_id(rng))).body(Body::empty()).unwrap(),
        2 => Request::put(format!("/products/{}", bad_id(rng)))
            .header("content-type", "application/json")
            .body(Body::from(valid().to_string()))
            .unwrap(),
        3 => Request::post("/products")
            .header("content-type", *["text/plain", "application/xml", "multipart/form-data"].choose(rng).unwrap())
            .body(Body::from(valid().to_string()))
            .unwrap(),
        4 => Request::post("/products")
            .header("content-type", "application/json")
            .body(Body::from(format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "n".repeat(70_000))))
            .unwrap(),
        5 => Request::put("/products/seed-001")
            .header("content-type", "application/json")
            .body(Body::from(bad_body(rng)))
            .unwrap(),
        _ => Request::post("/products")
            .header("content-type", "application/json")
            .body(Body::from(bad_body(rng)))
            .unwrap(),
    }
}

#[tokio::test]
async fn thousands_of_bad_requests_get_4xx_and_change_no_data() {
    let api = Api::start(&[("flush-interval", "1h")]).await;
    assert_eq!(api.call("PUT", "/products/seed-001", Some(&valid().to_string())).await.0, 200);
    let (pg_before, redis_before) = (api.pg_snapshot().await, api.redis_snapshot().await);
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_status = std::collections::BTreeMap::new();
    for i in 0..REQUESTS {
        let req = bad_request(&mut rng);
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body, _) = api.send(req).await;
        assert!((400..500).contains(&status), "seed {seed}, request {i} ({what}): {status} {body}");
        assert!(body["error"].is_string(), "seed {seed}, request {i} ({what}): no error message: {body}");
        *by_status.entry(status).or_insert(0) += 1;
    }
    println!("statuses: {by_status:?}");
    assert_eq!(api.pg_snapshot().await, pg_before, "seed {seed}: PostgreSQL changed");
    assert_eq!(api.redis_snapshot().await, redis_before, "seed {seed}: Redis changed");
    assert_eq!(api.call("GET", "/products/seed-001", None).await.1["name"], "Widget");
}
