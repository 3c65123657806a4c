//! Replays the fuzz corpora on the stable toolchain: every seed in `fuzz/corpus/<target>/`
//! and every fixed crash kept in `fuzz/regressions/<target>/` goes through the same
//! `wspush::fuzzing::check_*` function as the fuzz target of that name, so a seed that
//! once found a bug keeps guarding against it without libFuzzer.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use wspush::fuzzing;

/// A fuzz target's name and its invariant check.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 5] = [
    ("frame_decoder", fuzzing::check_frame_decoder),
    ("handshake_parser", fuzzing::check_handshake_parser),
    ("envelope_decoder", fuzzing::check_envelope_decoder),
    ("compat_decoder", fuzzing::check_compat_decoder),
    ("resp_parser", fuzzing::check_resp_parser),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file in `dir` and returns how many it ran; names every file that
/// failed rather than stopping at the first.
fn replay(dir: &Path, check: fn(&[u8])) -> usize {
    let files = files_in(dir);
    let mut failures = Vec::new();
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(failures.is_empty(), "invariants broken by: {failures:#?}");
    files.len()
}

#[test]
fn every_target_has_a_seed_corpus_and_every_seed_passes() {
    for (target, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let count = replay(&dir, check);
        assert!(count >= 10, "{}: only {count} seeds", dir.display());
    }
}

#[test]
fn every_fixed_crash_stays_fixed() {
    for (target, check) in TARGETS {
        replay(&fuzz_dir().join("regressions").join(target), check);
    }
}

#[test]
fn there_is_no_corpus_for_an_unknown_target() {
    // A target added to fuzz/ without a line above would silently go unreplayed.
    for sub in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(sub)) else { continue };
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(TARGETS.iter().any(|(target, _)| *target == name), "fuzz/{sub}/{name} has no check");
        }
    }
    let targets = files_in(&fuzz_dir().join("fuzz_targets"));
    assert_eq!(targets.len(), TARGETS.len(), "{targets:?}");
}
