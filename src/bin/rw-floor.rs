//! `rw-floor`: the baselines `scripts/bench.sh` measures the worker against.
//!
//! - `rw-floor split-extract FILE`: read the file in 8 MiB chunks, split lines with memchr
//!   and look up three fields with sonic-rs's lazy `get_many` (no validation, no filter, no
//!   routing, no records): the floor a dry run over plain input cannot beat.
//! - `rw-floor gunzip FILE`: drain the file through the same flate2/zlib-rs decoder the
//!   worker uses, and nothing else.

use std::io::Read;

use sonic_rs::{pointer, PointerTree};

fn split_extract(path: &str) -> std::io::Result<(u64, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut tree = PointerTree::new();
    tree.add_path(&pointer!["messageId"]);
    tree.add_path(&pointer!["messageCreated"]);
    tree.add_path(&pointer!["origin", "sourceId"]);
    let mut buf = vec![0u8; 8 << 20];
    let (mut carry, mut lines, mut found) = (Vec::new(), 0u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut rest = &buf[..n];
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = if carry.is_empty() {
                &rest[..i]
            } else {
                carry.extend_from_slice(&rest[..i]);
                &carry[..]
            };
            lines += 1;
            if let Ok(v) = unsafe { sonic_rs::get_many_unchecked(line, &tree) } {
                found += v.iter().filter(|x| x.is_some()).count() as u64;
            }
            carry.clear();
            rest = &rest[i + 1..];
        }
        carry.extend_from_slice(rest);
    }
    Ok((lines, found))
}

fn gunzip(path: &str) -> std::io::Result<u64> {
    let f = std::io::BufReader::with_capacity(8 << 20, std::fs::File::open(path)?);
    let mut d = flate2::bufread::MultiGzDecoder::new(f);
    let mut out = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = d.read(&mut out)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("split-extract"), Some(p)) => {
            let (lines, found) = split_extract(p).expect("read");
            eprintln!("{lines} lines, {found} fields");
        }
        (Some("gunzip"), Some(p)) => eprintln!("{} bytes", gunzip(p).expect("gunzip")),
        _ => {
            eprintln!("usage: rw-floor split-extract|gunzip FILE");
            std::process::exit(2);
        }
    }
}
