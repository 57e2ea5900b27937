//! The k6 scripts under bench/k6 parse. k6 cannot be installed here, so each script is copied to a
//! `.mjs` file and given to `node --check`, which parses it as an ES module without running it
//! (the `k6/http` imports are never resolved). That proves the syntax, not k6's runtime API.
use std::{path::Path, process::Command};

fn scripts() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("k6");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .expect("bench/k6 exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .collect();
    found.sort();
    found
}

#[test]
fn every_k6_script_parses_as_an_es_module() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scripts = scripts();
    assert_eq!(scripts.len(), 2, "basic.js and coalescing-test.js: {scripts:?}");
    for script in scripts {
        let copy = tmp.path().join(script.file_stem().expect("a file name")).with_extension("mjs");
        std::fs::copy(&script, &copy).expect("copy");
        let out = Command::new("node")
            .arg("--check")
            .arg(&copy)
            .output()
            .expect("node runs (install nodejs; scripts/ensure-deps.sh bench does)");
        assert!(out.status.success(), "{} does not parse:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_script_with_a_syntax_error_is_caught() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken.mjs");
    std::fs::write(&broken, "import http from 'k6/http';\nexport default function () { http.get('/'\n").expect("write");
    let status = Command::new("node").arg("--check").arg(&broken).output().expect("node runs").status;
    assert!(!status.success(), "node --check accepted a broken script");
}

#[test]
fn the_scripts_drive_the_endpoints_of_the_seed_exercises() {
    let read = |name: &str| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("k6").join(name)).expect("script")
    };
    let basic = read("basic.js");
    assert!(basic.contains("stages") && basic.contains("http.post(") && basic.contains("http.get("));
    let coalescing = read("coalescing-test.js");
    assert!(coalescing.contains("'seed-'") && coalescing.contains("http.put(") && coalescing.contains("/admin/queue"));
    assert!(
        coalescing.contains("Authorization: `Bearer ${__ENV.ADMIN_TOKEN")
            && coalescing.contains("/admin/queue`, { headers: ADMIN_HEADERS })"),
        "the script sends the admin token to /admin/queue"
    );
}
