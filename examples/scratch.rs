use std::time::Instant;
use sonic_rs::{JsonValueTrait, JsonContainerTrait};
fn dom(l: &[u8]) -> Option<usize> {
    let v: sonic_rs::Value = sonic_rs::from_slice(l).ok()?;
    let o = v.as_object()?;
    let mut n = 0;
    if o.get(&"messageId").and_then(|x| x.as_str()).is_some() { n += 1; }
    if o.get(&"messageCreated").and_then(|x| x.as_str()).is_some() { n += 1; }
    if let Some(or) = o.get(&"origin").and_then(|x| x.as_object()) {
        if or.get(&"sourceId").and_then(|x| x.as_str()).is_some() { n += 1; }
        if or.get(&"slug").and_then(|x| x.as_str()).is_some() { n += 1; }
    }
    Some(n)
}
fn main() {
    let d = reprocessing_worker::generate::ndjson(1, &Default::default(), 20000);
    let lines: Vec<&[u8]> = d.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let total = d.len() as f64;
    let mut best = [0f64; 4];
    for _ in 0..15 {
        let t = Instant::now();
        let n = lines.iter().filter(|l| reprocessing_worker::extract::extract(l).is_ok()).count();
        best[0] = best[0].max(total / t.elapsed().as_secs_f64() / 1e6); assert_eq!(n, 20000);
        let t = Instant::now();
        let n = lines.iter().filter(|l| dom(l) == Some(4)).count();
        best[1] = best[1].max(total / t.elapsed().as_secs_f64() / 1e6); assert_eq!(n, 20000);
        let t = Instant::now();
        let n = lines.iter().filter(|l| sonic_rs::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count();
        best[2] = best[2].max(total / t.elapsed().as_secs_f64() / 1e6); assert_eq!(n, 20000);
        let t = Instant::now();
        let n = lines.iter().filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count();
        best[3] = best[3].max(total / t.elapsed().as_secs_f64() / 1e6); assert_eq!(n, 20000);
    }
    println!("best MB/s: extract {:.0} | sonic DOM+4 {:.0} | sonic IgnoredAny {:.0} | serde_json IgnoredAny {:.0}", best[0], best[1], best[2], best[3]);
}
