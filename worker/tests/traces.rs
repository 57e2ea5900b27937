//! One trace follows a write from the HTTP request, through Redis, to the worker's batch that
//! commits it; the flush span links to every write it coalesced. An OTLP receiver started here
//! collects what the API (in this process) and the worker (a child process) export.
mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use common::{Stack, WorkerProc, product, wait_until};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    trace::v1::Span,
};
use prost::Message;

type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP trace receiver: POST /v1/traces with protobuf bodies. Returns its base URL.
async fn receiver(spans: Received) -> String {
    async fn export(State(spans): State<Received>, body: Bytes) -> Vec<u8> {
        let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.lock().unwrap().push((service.clone(), span));
            }
        }
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/v1/traces", post(export)).with_state(spans);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn named<'a>(spans: &'a [(String, Span)], name: &str) -> Vec<&'a (String, Span)> {
    spans.iter().filter(|(_, s)| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_follows_each_write_to_the_batch_that_commits_it() {
    let spans: Received = Arc::default();
    let endpoint = receiver(spans.clone()).await;
    let log = wbc_core::telemetry::LogArgs {
        log_format: wbc_core::telemetry::LogFormat::Text,
        log_filter: "warn,wbc_api=info".into(),
        otlp_endpoint: Some(endpoint.clone()),
        service_name: Some("wbc-api-test".into()),
    };
    let telemetry = log.init("wbc-api").unwrap();
    assert!(telemetry.exporting());
    let stack = Stack::start(&[("flush-interval", "300ms")]).await;
    let mut worker =
        WorkerProc::spawn(&stack, "w1", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("RUST_LOG", "info")]);
    worker.ready().await;

    // Three writes to one key, coalesced into one flush; the last continues a caller's trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    for i in 0..2 {
        assert_eq!(stack.put("traced", product("t", i)).await.0, 200);
    }
    let r = stack
        .http
        .put(format!("{}/products/traced", stack.api))
        .header("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01"))
        .json(&product("t", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stack.drained(Duration::from_secs(60)).await;
    assert!(worker.terminate(Duration::from_secs(20)), "worker did not stop cleanly");
    drop(telemetry); // flushes the API's spans

    let got = wait_until(Duration::from_secs(60), || async {
        let s = spans.lock().unwrap().clone();
        (named(&s, "persisted").len() == 1 && named(&s, "PUT /products/{id}").len() == 3).then_some(s)
    })
    .await
    .unwrap_or_else(|| {
        panic!("spans missing: {:?}", spans.lock().unwrap().iter().map(|(_, s)| &s.name).collect::<Vec<_>>())
    });

    let writes = named(&got, "queue write");
    assert_eq!(writes.len(), 3);
    let requests = named(&got, "PUT /products/{id}");
    for (_, w) in &writes {
        assert!(
            requests.iter().any(|(_, r)| r.trace_id == w.trace_id && r.span_id == w.parent_span_id),
            "queue write without its request"
        );
    }
    let last = requests
        .iter()
        .find(|(_, r)| hex(&r.trace_id) == caller_trace)
        .expect("the caller's traceparent was not continued");
    assert_eq!(hex(&last.1.parent_span_id), "00f067aa0ba902b7");

    let flushes = named(&got, "flush batch");
    let (service, flush) =
        flushes.iter().find(|(_, f)| f.links.len() == 3).expect("a flush span linking the three writes");
    assert!(service.contains("wbc-worker"), "{service}");
    let linked: HashSet<_> = flush.links.iter().map(|l| (l.trace_id.clone(), l.span_id.clone())).collect();
    let written: HashSet<_> = writes.iter().map(|(_, w)| (w.trace_id.clone(), w.span_id.clone())).collect();
    assert_eq!(linked, written);

    // The write that carried the final value has the commit in its own trace.
    let (_, persisted) = named(&got, "persisted")[0];
    assert_eq!(hex(&persisted.trace_id), caller_trace);
    let last_write = writes.iter().find(|(_, w)| hex(&w.trace_id) == caller_trace).unwrap();
    assert_eq!(persisted.parent_span_id, last_write.1.span_id);
    assert_eq!(persisted.links[0].span_id, flush.span_id);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
