//! The test suite itself: a test that needs an outside tool (a browser, Redis, an
//! ingress, the Python client) is `#[ignore]`d with the reason, so a plain
//! `cargo test` counts it as not run instead of passing it silently, and fails
//! when asked to run it without the tool.

use std::path::Path;

/// What a test calls when it needs an outside tool.
const NEEDS_A_TOOL: [&str; 4] = ["require(", "front(Kind", "_through(Kind", "python_client.py"];

#[test]
fn every_test_that_needs_a_tool_is_ignored_with_its_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut needing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "rs") || name == "suite.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("eprintln!(\"skipped"), "{name}: a test that skips passes silently");
        // Each item: its attributes, then its function up to the closing brace.
        for item in text.split("\n\n") {
            let Some(at) = item.find("fn ") else { continue };
            let (attributes, function) = item.split_at(at);
            let is_test = attributes.contains("#[test]") || attributes.contains("#[tokio::test");
            if !is_test || !NEEDS_A_TOOL.iter().any(|call| function.contains(call)) {
                continue;
            }
            let fn_name = function[3..].split('(').next().unwrap().to_owned();
            assert!(
                attributes.contains("#[ignore = \"needs "),
                "{name}: {fn_name} needs a tool but is not #[ignore = \"needs …\"]"
            );
            needing.push(fn_name);
        }
    }
    assert!(needing.len() >= 15, "the browser, Python, Redis and ingress tests, found: {needing:?}");
}
