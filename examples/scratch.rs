use std::time::Instant;
use sonic_rs::JsonValueTrait;
fn main() {
    let d = reprocessing_worker::generate::ndjson(1, &Default::default(), 20000);
    let lines: Vec<&[u8]> = d.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let total = d.len() as f64;
    for round in 0..2 {
        let t = Instant::now();
        let n = lines.iter().filter(|l| reprocessing_worker::extract::extract(l).is_ok()).count();
        println!("{round} extract: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n = lines.iter().filter(|l| sonic_rs::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count();
        println!("{round} ignoredany: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n = lines.iter().filter(|l| sonic_rs::from_slice::<sonic_rs::Value>(l).map(|v| v.get("messageId").is_some()).unwrap_or(false)).count();
        println!("{round} value dom: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n: usize = lines.iter().map(|l| memchr::memchr2_iter(b'{', b'[', l).count()).sum();
        println!("{round} memchr2 count: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n: usize = lines.iter().map(|l| l.iter().fold(0usize, |n, &b| n + usize::from(b == b'{' || b == b'['))).sum();
        println!("{round} fold count: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n: usize = lines.iter().map(|l| l.iter().filter(|&&b| (b | 0x20) == b'{' ).count()).sum();
        println!("{round} filter-or count: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n = lines.iter().filter(|l| std::str::from_utf8(l).is_ok()).count();
        println!("{round} utf8: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n = lines.iter().filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count();
        println!("{round} serde_json ignoredany: {:.0} MB/s {n}", total / t.elapsed().as_secs_f64() / 1e6);
    }
}
