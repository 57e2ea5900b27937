//! Prints the API's OpenAPI document, as `GET /openapi.json` serves it; `make openapi` writes it to
//! `api/openapi.json`, and a test fails when that copy drifts from the code.
fn main() {
    print!("{}", wbc_api::openapi::document_text());
}
