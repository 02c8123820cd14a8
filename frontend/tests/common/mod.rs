//! Where the conformance fixtures are: `$RBUILD_CONFORMANCE_DIR` when set (scripts/test.sh
//! sets it for a clone that is not beside `shared/`), else `shared/conformance` beside the
//! checkout.

use std::path::PathBuf;

pub fn conformance_dir() -> PathBuf {
    match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}
