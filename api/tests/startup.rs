//! The `wbc-api` binary refuses a token it cannot use at start, by name, before it contacts a store.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use wbc_core::testkit::free_port;

/// Runs `wbc-api` with `env` and stores on closed ports; returns its exit code and its stderr.
fn start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let closed = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wbc-api"))
        .env_clear()
        .env("REDIS_URL", format!("redis://127.0.0.1:{closed}"))
        .env("DATABASE_URL", format!("postgres://wbc@127.0.0.1:{closed}/wbc"))
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("wbc-api with {env:?} did not stop within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn file(content: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), content).unwrap();
    f
}

#[test]
fn an_empty_blank_or_short_token_file_is_refused_at_start_naming_the_variable_and_the_file() {
    for (variable, content, why) in [
        ("ADMIN_TOKEN", "", "is empty"),
        ("ADMIN_TOKEN", "\n", "is empty"),
        ("ADMIN_TOKEN", "                \n", "empty or blank"),
        ("ADMIN_TOKEN", "too-short-token\n", "has 15 characters, fewer than 16"),
        ("PRODUCTS_TOKEN", "short", "has 5 characters, fewer than 16"),
        ("PRODUCTS_TOKEN", "a token with spaces in it", "printable ASCII"),
    ] {
        let token = file(content);
        let path = token.path().to_str().unwrap();
        let (code, stderr) = start(&[(&format!("{variable}_FILE"), path)]);
        assert_eq!(code, Some(1), "{variable}_FILE {content:?}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid configuration {variable}:"))
                && stderr.contains(why)
                && stderr.contains(&format!("{variable}_FILE {path}")),
            "{variable}_FILE {content:?}: {stderr}"
        );
        assert!(!stderr.contains("cannot connect"), "refused before any store is contacted: {stderr}");
    }
}

#[test]
fn a_short_token_in_the_environment_is_refused_and_a_good_one_gets_as_far_as_the_stores() {
    let (code, stderr) = start(&[("ADMIN_TOKEN", "")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("invalid configuration ADMIN_TOKEN: empty or blank"), "{stderr}");
    let (code, stderr) = start(&[("ADMIN_TOKEN", "0123456789abcdef"), ("PRODUCTS_TOKEN", "0123456789")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("invalid configuration PRODUCTS_TOKEN: has 10 characters"), "{stderr}");
    assert!(!stderr.contains("0123456789"), "the token itself is never shown: {stderr}");
    let token = file("0123456789abcdef\n");
    let (code, stderr) = start(&[("ADMIN_TOKEN_FILE", token.path().to_str().unwrap())]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect") && !stderr.contains("ADMIN_TOKEN"), "{stderr}");
}
