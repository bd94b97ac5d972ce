//! Atomic file writes and staged output folders.

use std::path::Path;

use pgprune::export::{write_atomic, write_json_atomic, OutputDir};
use pgprune::Error;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn write_atomic_replaces_file_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    write_atomic(&path, b"first").unwrap();
    write_atomic(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    assert_eq!(names_in(dir.path()), vec!["out.bin"]);
}

#[test]
fn write_atomic_into_missing_folder_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("out.bin");
    let result = write_atomic(&path, b"data");
    assert!(matches!(result, Err(Error::Io { .. })));
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn write_json_atomic_writes_pretty_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("value.json");
    write_json_atomic(&path, &serde_json::json!({"a": 1, "b": [2, 3]})).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n  \"a\": 1"), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["b"][1], 3);
}

#[test]
fn output_dir_appears_only_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pruned");
    let output = OutputDir::create(&target, false).unwrap();
    output.write("config.json", b"{}").unwrap();
    output
        .write_json("nested/report.json", &serde_json::json!({"ok": true}))
        .unwrap();
    assert!(!target.exists(), "target visible before commit");

    let committed = output.commit().unwrap();
    assert_eq!(committed, target);
    assert_eq!(std::fs::read(target.join("config.json")).unwrap(), b"{}");
    assert!(target.join("nested/report.json").is_file());
    assert_eq!(
        names_in(dir.path()),
        vec!["pruned"],
        "staging folder left behind"
    );
}

#[test]
fn output_dir_dropped_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pruned");
    {
        let output = OutputDir::create(&target, false).unwrap();
        output.write("model.safetensors", b"half written").unwrap();
    }
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn output_dir_rejects_non_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pruned");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("old.txt"), b"old").unwrap();
    match OutputDir::create(&target, false) {
        Err(error @ Error::OutputExists { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&target.display().to_string()), "{message}");
            assert!(message.contains("overwrite"), "{message}");
        }
        other => panic!("expected an output-exists error, got {other:?}"),
    }
    assert_eq!(std::fs::read(target.join("old.txt")).unwrap(), b"old");
}

#[test]
fn output_dir_replaces_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pruned");
    std::fs::create_dir(&target).unwrap();
    let output = OutputDir::create(&target, false).unwrap();
    output.write("a.txt", b"new").unwrap();
    output.commit().unwrap();
    assert_eq!(names_in(&target), vec!["a.txt"]);
}

#[test]
fn output_dir_overwrites_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pruned");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("old.txt"), b"old").unwrap();
    let output = OutputDir::create(&target, true).unwrap();
    output.write("new.txt", b"new").unwrap();
    output.commit().unwrap();
    assert_eq!(names_in(&target), vec!["new.txt"]);
    assert_eq!(
        names_in(dir.path()),
        vec!["pruned"],
        "old folder left behind"
    );
}

#[test]
fn output_dir_rejects_escaping_paths() {
    let dir = tempfile::tempdir().unwrap();
    let output = OutputDir::create(dir.path().join("pruned"), false).unwrap();
    let up = output.write("../escape.txt", b"x");
    assert!(matches!(up, Err(Error::InvalidArgument { .. })));
    let absolute = output.write("/tmp/escape.txt", b"x");
    assert!(matches!(absolute, Err(Error::InvalidArgument { .. })));
}

#[test]
fn output_dir_creates_missing_parents() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("runs/today/pruned");
    let output = OutputDir::create(&target, false).unwrap();
    output.write("a.txt", b"new").unwrap();
    output.commit().unwrap();
    assert_eq!(names_in(&target), vec!["a.txt"]);
    assert_eq!(names_in(&dir.path().join("runs/today")), vec!["pruned"]);
}
