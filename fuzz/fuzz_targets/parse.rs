//! `cargo fuzz run parse -s none` (in fuzz/): any bytes through
//! parse + dump + typed instructions must never panic, and a file that
//! parses must dump one line per instruction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::{dump::dump, instructions::instructions, parser::parse};

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    if let Ok(df) = parse(&src) {
        assert_eq!(dump(&df).lines().count(), df.nodes.len());
        let _ = instructions(&df, &src);
    }
});
