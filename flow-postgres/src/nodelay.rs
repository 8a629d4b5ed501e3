//! TCP_NODELAY on flow's connections. sqlx 0.9.0 opens TCP connections with
//! Nagle's algorithm on (sqlx#4335, fixed upstream after 0.9.0): a message whose
//! last TCP segment is partial, sent while an earlier segment is unacknowledged,
//! waits for the server's delayed ACK, 40 ms on Linux. Across a network that is
//! any statement over about 1.4 KB; on loopback, any over 64 KiB, which a commit
//! of some sixty transitions is: one worker with 128 slots did 3,300 steps/s
//! over TCP and 25,800 over a Unix socket, the same code (docs/BENCHMARKS.md).
//!
//! sqlx offers no hook on its sockets, so after connecting flow asks the server
//! for the connection's client port and turns Nagle off on the socket of this
//! process bound to that local port. Behind a proxy or NAT the port the server
//! sees may not be ours: then nothing is found, and the connection stays as sqlx
//! made it. Once sqlx sets TCP_NODELAY itself (its test below then fails), this
//! module can go.

use sqlx::PgConnection;

/// Turns Nagle's algorithm off on `conn`'s socket; a Unix-socket connection
/// (no client port) needs nothing. A failure to find or set it is logged and
/// leaves the connection usable.
pub(crate) async fn disable_nagle(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut *conn)
        .await?;
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
        return Ok(());
    };
    match with_local_port(port, |socket| socket.set_tcp_nodelay(true)) {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::debug!(error = %e, port, "could not set TCP_NODELAY"),
        None => tracing::debug!(port, "no socket of this process has the connection's port"),
    }
    Ok(())
}

/// Whether the TCP socket of this process bound to local `port` has Nagle's
/// algorithm off; `None` when there is no such socket. For tests.
#[doc(hidden)]
pub fn tcp_nodelay_of_local_port(port: u16) -> Option<bool> {
    with_local_port(port, |socket| socket.tcp_nodelay())?.ok()
}

/// Runs `f` on the connected TCP socket of this process whose local port is
/// `port`, if there is one.
#[cfg(unix)]
fn with_local_port<T>(
    port: u16,
    f: impl FnOnce(&socket2::SockRef<'_>) -> std::io::Result<T>,
) -> Option<std::io::Result<T>> {
    use std::os::fd::{BorrowedFd, RawFd};

    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        // Not Linux: the descriptors a process of ordinary size has.
        Err(_) => (0..4096).collect(),
    };
    for raw in open {
        // SAFETY: `raw` was open when listed, and it is only borrowed for the two
        // socket calls below. Closed meanwhile, they fail (EBADF); reused by
        // another file, they fail (ENOTSOCK) or find another port: nothing is
        // read or written through it but socket options.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let socket = socket2::SockRef::from(&fd);
        let ours = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port)
            && socket.peer_addr().is_ok();
        if ours {
            return Some(f(&socket));
        }
    }
    None
}

#[cfg(not(unix))]
fn with_local_port<T>(
    _port: u16,
    _f: impl FnOnce(&socket2::SockRef<'_>) -> std::io::Result<T>,
) -> Option<std::io::Result<T>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// Over TCP, sqlx 0.9.0 leaves Nagle on, and `disable_nagle` turns it off.
    #[tokio::test]
    async fn a_tcp_connection_gets_tcp_nodelay() {
        let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by scripts/test.sh");
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
            .fetch_one(&mut conn)
            .await
            .expect("client port");
        let port = u16::try_from(port.expect("DATABASE_URL connects over TCP")).unwrap();
        assert_eq!(
            tcp_nodelay_of_local_port(port),
            Some(false),
            "sqlx now sets TCP_NODELAY itself: this module can go"
        );
        disable_nagle(&mut conn).await.expect("disable Nagle");
        assert_eq!(tcp_nodelay_of_local_port(port), Some(true));
    }
}
