//! config.json and files.json parsing (plain or gzip) on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rw_core::{parse_files_list, parse_job_config};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_job_config(data) {
        assert!(!e.to_string().contains('\n'));
    }
    if let Err(e) = parse_files_list(data) {
        assert!(!e.to_string().contains('\n'));
    }
});
