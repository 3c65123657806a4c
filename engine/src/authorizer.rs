//! The host's say on who connects: a callback the acceptor asks about every upgrade, for
//! hosts that keep their own sessions (a web application checking its session store)
//! instead of, or on top of, tokens.

use std::net::SocketAddr;

/// What the host's [`Authorizer`] is told about an upgrade request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AuthorizeRequest<'a> {
    /// The id the client connects as (from the path, percent-decoded; or the id given to
    /// [`Engine::register`](crate::Engine::register)).
    pub id: &'a str,
    /// The request target as sent: path and query.
    pub path: &'a str,
    /// Every request header, name lower-cased, value as sent (cookies included).
    pub headers: &'a [(String, Vec<u8>)],
    /// The client's address, when the socket has one.
    pub peer: Option<SocketAddr>,
}

impl AuthorizeRequest<'_> {
    /// The value of the first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }
}

/// Decides whether an upgrade may proceed: `true` allows it, `false` answers 403.
///
/// Called on the acceptor thread, which serves every pending upgrade: return quickly (a
/// lookup in memory or a local cache, not a network round trip), or every other client
/// waits. A panic counts as a denial (and is logged). Any `Fn(&AuthorizeRequest<'_>) ->
/// bool + Send + Sync + 'static` closure is an `Authorizer`.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether the client of `request` may connect as `request.id`.
    fn authorize(&self, request: &AuthorizeRequest<'_>) -> bool;
}

impl<F> Authorizer for F
where
    F: Fn(&AuthorizeRequest<'_>) -> bool + Send + Sync + 'static,
{
    fn authorize(&self, request: &AuthorizeRequest<'_>) -> bool {
        self(request)
    }
}

/// Where the engine keeps the host's authorizer; swapped without stopping the acceptor.
pub(crate) type AuthorizerSlot = arc_swap::ArcSwapOption<Box<dyn Authorizer>>;
