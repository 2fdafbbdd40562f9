//! Replays the `parse_message` fuzz corpus (`fuzz/corpus/parse_message/`) as an ordinary test,
//! through the very checks the fuzz target runs (`fuzz/src/lib.rs`): no input may panic, and
//! every accepted reading must encode as exactly one line of line protocol. So an input the
//! fuzzer once found keeps being checked by every `cargo test`, without nightly or cargo-fuzz.

#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use std::path::PathBuf;

use harness::Outcome;

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_message");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("a readable corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, data)
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the fuzz corpus {} is empty: nothing would be checked",
        dir.display()
    );
    files
}

#[test]
fn every_corpus_input_is_validated_without_panic_and_accepted_ones_encode_as_one_line() {
    let (mut accepted, mut rejected, mut skipped) = (0, 0, 0);
    for (path, data) in corpus() {
        let outcome = std::panic::catch_unwind(|| harness::check(&data))
            .unwrap_or_else(|_| panic!("{} fails the fuzz checks", path.display()));
        match outcome {
            Outcome::Accepted(_) => accepted += 1,
            Outcome::Rejected(_) => rejected += 1,
            Outcome::Skipped => skipped += 1,
        }
    }
    // A corpus of only one kind would test half the code; the seeds hold both.
    assert!(
        accepted > 0 && rejected > 0,
        "accepted {accepted}, rejected {rejected}, skipped {skipped}"
    );
}

#[test]
fn the_seeds_mean_what_their_names_say() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_message");
    let seed = |name: &str| {
        let path = dir.join(name);
        harness::check(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display())),
        )
    };
    assert!(
        matches!(seed("good_contract_example"), Outcome::Accepted(r) if r.energy_kwh == 1043.25)
    );
    assert!(matches!(seed("skipped_topic_not_utf8"), Outcome::Skipped));
    for (name, reason) in [
        ("bad_payload_1e308", "out_of_range"),
        ("bad_payload_bom", "invalid_json"),
        ("bad_payload_deep_nesting", "invalid_json"),
        ("bad_payload_too_large", "payload_too_large"),
        ("bad_panel_mismatch", "panel_mismatch"),
    ] {
        match seed(name) {
            Outcome::Rejected(rejection) => assert_eq!(rejection.reason(), reason, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn an_input_splits_into_topic_length_topic_and_payload() {
    let data = harness::join(harness::PREFIX, b"{}");
    assert_eq!(data[0] as usize, harness::PREFIX.len());
    assert_eq!(
        harness::split(&data),
        (harness::PREFIX.as_bytes(), b"{}".as_slice())
    );
    // A length beyond the input takes what there is; an empty input is empty.
    assert_eq!(
        harness::split(&[200, b'a']),
        (b"a".as_slice(), b"".as_slice())
    );
    assert_eq!(harness::split(&[]), (b"".as_slice(), b"".as_slice()));
    assert!(harness::received_at().timestamp() > 0);
}
