//! Realistic Jitsu `IngestMessage` lines (about 1.4 KB each) for benchmarks, the demo and
//! the fault suite. Deterministic: the same seed gives the same bytes.

use std::fmt::Write as _;

/// splitmix64: a tiny, well-distributed deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose numbers are fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (0 when `n` is 0), by modulo: slightly biased, which test data allows.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn hex(&mut self, out: &mut String, n: usize) {
        for _ in 0..n {
            let _ = write!(out, "{:x}", self.below(16));
        }
    }
}

const EVENTS: [&str; 6] = ["page", "identify", "track", "track", "track", "group"];
const PAGES: [&str; 5] = ["/", "/pricing", "/docs/getting-started", "/blog/replaying-events", "/signup"];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
];

/// Options for [`line()`].
#[derive(Debug, Clone)]
pub struct Shape {
    /// Stream ids to draw `origin.sourceId` from.
    pub streams: Vec<String>,
    /// Unix seconds of the first event; each line is a few ms later.
    pub start_unix: i64,
}

impl Default for Shape {
    fn default() -> Self {
        Self { streams: (0..4).map(|i| format!("stream-{i}")).collect(), start_unix: 1_714_550_400 }
    }
}

/// Appends line number `i` (without newline) to `out`.
pub fn line(rng: &mut Rng, shape: &Shape, i: u64, out: &mut String) {
    let ts = shape.start_unix * 1000 + (i as i64) * 7;
    let created = chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let stream = &shape.streams[rng.below(shape.streams.len() as u64) as usize];
    let event = EVENTS[rng.below(EVENTS.len() as u64) as usize];
    let page = PAGES[rng.below(PAGES.len() as u64) as usize];
    let agent = AGENTS[rng.below(AGENTS.len() as u64) as usize];
    out.push_str(r#"{"ingestType":"browser","messageCreated":""#);
    let _ = write!(out, "{created}");
    out.push_str(r#"","writeKey":"wk_"#);
    rng.hex(out, 24);
    out.push_str(r#"","messageId":""#);
    rng.hex(out, 8);
    out.push('-');
    rng.hex(out, 4);
    out.push('-');
    rng.hex(out, 4);
    out.push('-');
    rng.hex(out, 4);
    out.push('-');
    rng.hex(out, 12);
    let _ = write!(
        out,
        concat!(
            r#"","type":"{event}","origin":{{"baseUrl":"https://www.example.com","slug":"slug-{stream}","#,
            r#""sourceId":"{stream}","domain":"www.example.com","classic":false}},"#
        ),
        event = event,
        stream = stream,
    );
    let _ = write!(
        out,
        concat!(
            r#""httpHeaders":{{"accept":"*/*","accept-language":"en-US,en;q=0.9","#,
            r#""content-type":"application/json","user-agent":"{agent}","#,
            r#""x-forwarded-for":"203.0.113.{}"}},"#
        ),
        rng.below(255),
        agent = agent,
    );
    let _ = write!(out, r#""httpPayload":{{"type":"{event}","event":"{event}_event","anonymousId":""#);
    rng.hex(out, 32);
    let _ = write!(
        out,
        r#"","userId":"user-{}","messageId":"p-{i}","timestamp":"{created}","sentAt":"{created}","#,
        rng.below(100_000)
    );
    let _ = write!(
        out,
        concat!(
            r#""properties":{{"path":"{page}","url":"https://www.example.com{page}","#,
            r#""title":"Example \u2014 {page}","referrer":"https://www.google.com/","#,
            r#""search":"?utm_source=newsletter&utm_medium=email","width":{},"height":{},"plan":"pro","#,
            r#""value":{}.{}}},"#
        ),
        800 + rng.below(1200),
        600 + rng.below(800),
        rng.below(1000),
        rng.below(100),
        page = page,
    );
    let _ = write!(
        out,
        concat!(
            r#""context":{{"library":{{"name":"@jitsu/js","version":"1.9.{}"}},"userAgent":"{agent}","#,
            r#""locale":"en-US","screen":{{"width":1920,"height":1080,"density":2}},"#,
            r#""page":{{"path":"{page}","referrer":"","title":"Example","#,
            r#""url":"https://www.example.com{page}","encoding":"UTF-8"}},"#,
            r#""campaign":{{"source":"newsletter","medium":"email","name":"launch-{}"}},"#,
            r#""ip":"203.0.113.{}"}}}}}}"#
        ),
        rng.below(20),
        rng.below(50),
        rng.below(255),
        agent = agent,
        page = page,
    );
}

/// NDJSON of `lines` lines.
pub fn ndjson(seed: u64, shape: &Shape, lines: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(lines as usize * 1500);
    for i in 0..lines {
        line(&mut rng, shape, i, &mut s);
        s.push('\n');
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_realistic_and_deterministic() {
        let a = ndjson(7, &Shape::default(), 200);
        assert_eq!(a, ndjson(7, &Shape::default(), 200));
        assert_ne!(a, ndjson(8, &Shape::default(), 200));
        let lines: Vec<&[u8]> = a.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 200);
        let avg = a.len() / 200;
        assert!((1200..1700).contains(&avg), "average line {avg} bytes");
        for l in lines {
            let e = crate::extract::extract(l).unwrap();
            assert!(e.message_id.is_some() && e.message_created.is_some());
            assert!(e.origin.unwrap().source_id.unwrap().starts_with("stream-"));
        }
    }
}
