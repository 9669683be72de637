//! `TCP_NODELAY` on the worker's broker connections.
//!
//! rskafka 0.6 writes a request as two writes, the 4-byte length and then the body, on a
//! socket it opens itself without `TCP_NODELAY`, and offers no hook to set it. Nagle's
//! algorithm then holds the body back until the broker acknowledges the length, and the
//! broker delays that acknowledgement by up to 40 ms whenever the connection was idle: an
//! idle produce took 40 ms on loopback instead of a fraction of one.
//!
//! The remedy here: find the process's connected TCP sockets (its descriptors, listed in
//! `/proc/self/fd`) and set `TCP_NODELAY` on every one that lacks it. [`KafkaBroker`] runs it
//! after connecting, after creating a partition client, after any produce that failed or
//! took long (rskafka reconnects inside its next request), and once a second, so a
//! connection opened again after a reconnect is fixed within a second at the latest. All of
//! the process's TCP sockets get it: PostgreSQL's and S3's connections already ask for it.
//! On systems without `/proc` this does nothing.
//!
//! [`KafkaBroker`]: crate::kafka::KafkaBroker

use std::os::fd::BorrowedFd;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the background task looks for new connections.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// Sets `TCP_NODELAY` on every connected TCP socket of this process that lacks it. Returns
/// how many it changed.
pub(crate) fn apply() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let fds: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    fds.into_iter().filter(|&fd| set_if_tcp(fd)).count()
}

/// True when `fd` is a connected TCP socket that did not have `TCP_NODELAY` and now has it.
/// Anything else (a file, a pipe, a Unix socket, a descriptor closed meanwhile) is left alone:
/// every call below fails harmlessly on it.
fn set_if_tcp(fd: i32) -> bool {
    // SAFETY: the descriptor is only used for the socket-option calls below while this
    // function runs. If another thread closes it meanwhile, they fail with EBADF, or act on
    // whatever descriptor took its number, on which setting TCP_NODELAY on a TCP socket is
    // harmless and nothing else is changed.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let s = socket2::SockRef::from(&fd);
    let is_tcp =
        s.r#type().is_ok_and(|t| t == socket2::Type::STREAM) && s.peer_addr().is_ok_and(|a| a.as_socket().is_some());
    is_tcp && s.tcp_nodelay().is_ok_and(|on| !on) && s.set_tcp_nodelay(true).is_ok()
}

/// Applies it every [`EVERY`] until `stop` fires.
pub(crate) async fn keep_applying(stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let n = apply();
                if n > 0 {
                    tracing::debug!(sockets = n, "TCP_NODELAY set");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nodelay_on_connected_tcp_sockets_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!client.nodelay().unwrap());
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(apply() >= 2, "the client and the accepted socket");
        assert!(client.nodelay().unwrap() && server.nodelay().unwrap());
        // Nothing left to change on these; the listener and the Unix sockets are not touched.
        assert!(!set_if_tcp(std::os::fd::AsRawFd::as_raw_fd(&client)));
        assert!(!set_if_tcp(std::os::fd::AsRawFd::as_raw_fd(&listener)));
        assert!(!set_if_tcp(std::os::fd::AsRawFd::as_raw_fd(&a)));
        drop((a, b));
    }
}
