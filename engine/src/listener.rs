//! The listening socket.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

/// Connections the kernel queues before the acceptor takes them. The standard library's
/// 128 overflows in a reconnect storm (every client of a restarted node at once), and an
/// overflow costs a client a SYN retransmission: a second or more.
const BACKLOG: i32 = 1024;

/// Binds a non-blocking listener on `addr` with a backlog fit for connect storms.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // A restarted node must be able to bind while its old sockets sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
