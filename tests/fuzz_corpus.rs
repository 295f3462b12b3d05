//! Replays every committed fuzz input (the corpus that `bench/fuzz` grew, and every crash it
//! found, kept under `fuzz/artifacts/` once fixed) through the same entry points the fuzz
//! targets call. This is how CI keeps fuzz findings fixed without a nightly toolchain.

use std::path::Path;

#[test]
fn every_committed_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, target) in shoal::fuzz::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a corpus entry").path();
                let data = std::fs::read(&path).expect("a corpus file");
                // A panic names the input, so it can be run again with `cargo fuzz run`.
                let caught = std::panic::catch_unwind(|| target(&data));
                assert!(
                    caught.is_ok(),
                    "fuzz target {name} panics on {}",
                    path.display()
                );
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz target {name} has no committed corpus");
        total += inputs;
    }
    eprintln!("replayed {total} fuzz inputs");
}
