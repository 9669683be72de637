//! A fault-injecting HTTP proxy for the object-store tests.

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Error500,
    Cut(usize),
    /// A PUT answered 403 and not forwarded.
    Refused,
}

/// What a [`FaultProxy`] does to the requests it forwards.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Every 3rd ranged GET answered 500, every 4th one's body cut short.
    RangedReads,
    /// The first `times` PUTs whose path contains `containing` refused (403: a client does
    /// not retry it).
    RefusePuts { containing: String, times: usize },
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub range: Option<(u64, u64)>,
    pub fault: Option<Fault>,
}

/// An HTTP proxy in front of an object store (S3 or GCS) that, for ranged GETs, answers every
/// 3rd with a 500 and cuts every 4th body short after half of it (then closes the connection);
/// or refuses some PUTs ([`Plan`]). Requests reach the upstream with its own `Host`.
pub struct FaultProxy {
    addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<Entry>>>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::with(upstream, Plan::RangedReads)
    }

    pub fn with(upstream: &str, plan: Plan) -> FaultProxy {
        use std::io::{BufRead, BufReader, Read, Write};
        let up = upstream.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Entry>::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            let mut gets = 0u64;
            let mut refused = 0usize;
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { continue };
                let mut r = BufReader::new(client.try_clone().unwrap());
                // One request per connection: read it, forward it, answer, close.
                let mut head = String::new();
                let mut line = String::new();
                let mut len = 0usize;
                let mut range = None;
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        let (a, b) = v.trim().split_once('-').unwrap();
                        range = Some((a.parse().unwrap(), b.parse().unwrap()));
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if lower.starts_with("host:") {
                        head.push_str(&format!("host: {up}\r\n"));
                    } else if !lower.starts_with("connection:") {
                        head.push_str(&line);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let is_get = head.starts_with("GET ") && range.is_some() && matches!(plan, Plan::RangedReads);
                let mut fault = None;
                if let Plan::RefusePuts { containing, times } = &plan {
                    if head.starts_with("PUT ") && path.contains(containing.as_str()) && refused < *times {
                        refused += 1;
                        let msg = "<Error><Code>AccessDenied</Code><Message>injected</Message></Error>";
                        let _ = write!(client, "HTTP/1.1 403 Forbidden\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}", msg.len());
                        l2.lock().unwrap().push(Entry { path, range, fault: Some(Fault::Refused) });
                        continue;
                    }
                }
                if is_get {
                    gets += 1;
                    if gets % 3 == 0 {
                        fault = Some(Fault::Error500);
                    }
                }
                if let Some(Fault::Error500) = fault {
                    let msg = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
                    let _ = write!(client, "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}", msg.len());
                    l2.lock().unwrap().push(Entry { path, range, fault });
                    continue;
                }
                let mut upstream = std::net::TcpStream::connect(&up).unwrap();
                upstream.write_all(head.as_bytes()).unwrap();
                upstream.write_all(b"connection: close\r\n\r\n").unwrap();
                upstream.write_all(&body).unwrap();
                let mut resp = Vec::new();
                let _ = upstream.read_to_end(&mut resp);
                if is_get && gets % 4 == 0 {
                    if let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                        let body_len = resp.len() - (split + 4);
                        let sent = body_len / 2;
                        let _ = client.write_all(&resp[..split + 4 + sent]);
                        fault = Some(Fault::Cut(sent));
                        l2.lock().unwrap().push(Entry { path, range, fault });
                        continue; // dropping the socket cuts the body short
                    }
                }
                let _ = client.write_all(&resp);
                l2.lock().unwrap().push(Entry { path, range, fault });
            }
        });
        FaultProxy { addr, log }
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn log(&self) -> Vec<Entry> {
        self.log.lock().unwrap().clone()
    }
    /// (faults injected, reads that resumed at the exact byte where a body was cut).
    pub fn faults_and_resumes(&self) -> (usize, usize) {
        let log = self.log();
        let faults = log.iter().filter(|e| e.fault.is_some()).count();
        // After a body cut short, the next request for that object starts where the cut was.
        let mut resumed = 0;
        for w in log.windows(2) {
            if let (Some(Fault::Cut(sent)), Some((a, _))) = (w[0].fault, w[0].range) {
                if w[1].path == w[0].path && w[1].range.map(|r| r.0) == Some(a + sent as u64) {
                    resumed += 1;
                }
            }
        }
        (faults, resumed)
    }
}
