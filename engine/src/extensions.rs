//! WebSocket extensions (RFC 6455 section 9): what a connection negotiated in its upgrade.
//!
//! The handshake answers the client's `Sec-WebSocket-Extensions` offer with
//! [`Extensions::negotiate`]; the connection keeps the result and gives its decoder the
//! reserved bits it allows ([`Extensions::allowed_rsv`]). No extension is implemented yet,
//! so every offer is declined and the value is always empty; permessage-deflate (RFC 7692)
//! is meant to slot in here without changing those steps.

use crate::frame::Rsv;

/// The extensions one connection negotiated: none, for now.
///
/// Empty by [`Default`], and zero-sized while it is always empty, so a connection pays
/// nothing for holding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extensions {}

impl Extensions {
    /// Answers the client's offer: `offers` are the values of its
    /// `Sec-WebSocket-Extensions` headers, in order (none if it sent none).
    ///
    /// Declines everything: an answer without the header is how a server accepts none of
    /// the offered extensions (RFC 6455 section 9.1), and the client must then send plain
    /// frames.
    pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a [u8]>) -> Extensions {
        // Nothing to look for in the offers until an extension is implemented.
        drop(offers);
        Extensions::default()
    }

    /// Whether nothing was negotiated.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// The reserved bits these extensions let a peer set on the first frame of a data
    /// message: none.
    pub fn allowed_rsv(&self) -> Rsv {
        Rsv::NONE
    }

    /// The value of the `Sec-WebSocket-Extensions` header of the 101 response, if the
    /// response needs one: not while nothing is negotiated.
    pub fn response_header(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offer_is_declined() {
        let offers: [&[u8]; 2] = [b"permessage-deflate; client_max_window_bits", b"x-webkit-deflate-frame"];
        for extensions in [Extensions::negotiate(offers), Extensions::negotiate([]), Extensions::default()] {
            assert!(extensions.is_empty());
            assert_eq!(extensions.allowed_rsv(), Rsv::NONE);
            assert_eq!(extensions.response_header(), None);
        }
        assert_eq!(std::mem::size_of::<Extensions>(), 0);
    }
}
