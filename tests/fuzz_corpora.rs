//! Every input the fuzz targets keep (`fuzz/corpus/<target>/`) and every input that ever made
//! one fail (`fuzz/artifacts/<target>/`), replayed through the same entry functions in a plain
//! `cargo test`. A target without a corpus fails: the replay cannot pass by finding nothing.

use std::path::{Path, PathBuf};

use portvakt::fuzzing;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = inputs(&fuzz.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is missing or empty");
    let artifacts = inputs(&fuzz.join("artifacts").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail: {failed:#?}",
        failed.len(),
        corpus.len() + artifacts.len()
    );
}

macro_rules! targets {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), fuzzing::$target);
            }
        )*

        /// Every target in fuzz/fuzz_targets/ is replayed here.
        #[test]
        fn every_fuzz_target_is_replayed() {
            let known = [$(stringify!($target)),*];
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
            for path in inputs(&dir) {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
                assert!(known.contains(&name.as_str()), "fuzz target {name} is not replayed in tests/fuzz_corpora.rs");
            }
        }
    };
}

targets!(
    upstream_answer,
    upstream_differential,
    chunked_body,
    request_path,
    bearer,
    compact_jws,
    issuer_form,
    issuer_assertion,
    soap,
    krr_json,
    wssec,
    dpop_proof,
);
