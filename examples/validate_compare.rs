//! Compares ways to validate a line and read its fields, on generated IngestMessage lines:
//! the worker's one-pass extraction, a sonic-rs DOM parse, sonic-rs's bare validation
//! (`IgnoredAny`), and validation followed by a lazy `get_many`. Best of 15 rounds, in MB/s:
//! `cargo run --release --example validate_compare`. The README's performance notes quote it.

use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::time::Instant;
fn dom(l: &[u8]) -> Option<usize> {
    let v: sonic_rs::Value = sonic_rs::from_slice(l).ok()?;
    let o = v.as_object()?;
    let mut n = 0;
    if o.get(&"messageId").and_then(|x| x.as_str()).is_some() {
        n += 1;
    }
    if o.get(&"messageCreated").and_then(|x| x.as_str()).is_some() {
        n += 1;
    }
    if let Some(or) = o.get(&"origin").and_then(|x| x.as_object()) {
        if or.get(&"sourceId").and_then(|x| x.as_str()).is_some() {
            n += 1;
        }
        if or.get(&"slug").and_then(|x| x.as_str()).is_some() {
            n += 1;
        }
    }
    Some(n)
}
fn two_pass(l: &[u8], tree: &sonic_rs::PointerTree) -> Option<usize> {
    sonic_rs::from_slice::<serde::de::IgnoredAny>(l).ok()?;
    let v = unsafe { sonic_rs::get_many_unchecked(l, tree) }.ok()?;
    Some(v.iter().filter(|x| x.as_ref().and_then(|x| x.as_str()).is_some()).count())
}
fn main() {
    let mut tree = sonic_rs::PointerTree::new();
    tree.add_path(&sonic_rs::pointer!["messageId"]);
    tree.add_path(&sonic_rs::pointer!["messageCreated"]);
    tree.add_path(&sonic_rs::pointer!["origin", "sourceId"]);
    tree.add_path(&sonic_rs::pointer!["origin", "slug"]);
    let d = rw_core::generate::ndjson(1, &Default::default(), 20000);
    let lines: Vec<&[u8]> = d.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let total = d.len() as f64;
    let mut best = [0f64; 4];
    for _ in 0..15 {
        let t = Instant::now();
        let n = lines.iter().filter(|l| rw_core::extract(l).is_ok()).count();
        best[0] = best[0].max(total / t.elapsed().as_secs_f64() / 1e6);
        assert_eq!(n, 20000);
        let t = Instant::now();
        let n = lines.iter().filter(|l| dom(l) == Some(4)).count();
        best[1] = best[1].max(total / t.elapsed().as_secs_f64() / 1e6);
        assert_eq!(n, 20000);
        let t = Instant::now();
        let n = lines.iter().filter(|l| sonic_rs::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count();
        best[2] = best[2].max(total / t.elapsed().as_secs_f64() / 1e6);
        assert_eq!(n, 20000);
        let t = Instant::now();
        let n = lines.iter().filter(|l| two_pass(l, &tree) == Some(4)).count();
        best[3] = best[3].max(total / t.elapsed().as_secs_f64() / 1e6);
        assert_eq!(n, 20000);
    }
    println!(
        "best MB/s: extract {:.0} | sonic DOM+4 {:.0} | sonic IgnoredAny {:.0} | two-pass {:.0}",
        best[0], best[1], best[2], best[3]
    );
}
