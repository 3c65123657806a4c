//! WebSocket extensions (RFC 6455 section 9): what a connection negotiated in its upgrade.
//!
//! The handshake answers the client's `Sec-WebSocket-Extensions` offer with
//! [`Extensions::negotiate`]; the connection keeps the result, gives its decoder the
//! reserved bits it allows ([`Extensions::allowed_rsv`]) and its output the window its
//! compressed frames must fit ([`Extensions::deflate_window_bits`]).
//!
//! The one extension is permessage-deflate (RFC 7692), accepted only with compression on,
//! and always with `server_no_context_takeover` and `client_no_context_takeover` in the
//! answer (section 7.1.1: a server may add both to any offer). So each message is
//! compressed on its own: the engine compresses a message once and writes the same frame
//! to every socket that negotiated the same window, and no socket keeps a compression or
//! decompression context (tens of KiB each) between messages.

use crate::frame::Rsv;

/// The largest LZ77 window of DEFLATE, as `max_window_bits` counts it (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest `max_window_bits` RFC 7692 allows (256 bytes).
pub const MIN_WINDOW_BITS: u8 = 8;

/// The extensions one connection negotiated: permessage-deflate or nothing.
///
/// Empty by [`Default`]; one byte, so a connection pays nothing for holding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extensions {
    /// permessage-deflate's `server_max_window_bits` (8 to 15) when negotiated, else 0.
    deflate_window_bits: u8,
}

impl Extensions {
    /// Answers the client's offer: `offers` are the values of its
    /// `Sec-WebSocket-Extensions` headers, in order (none if it sent none); `compression`
    /// says whether permessage-deflate may be accepted.
    ///
    /// The first acceptable permessage-deflate offer is taken (RFC 7692 section 5: offers
    /// are in the client's order of preference); an offer with an unknown or repeated
    /// parameter, or a window outside 8 to 15, is declined and the next one considered.
    /// Every other extension is declined: an answer without it is how a server accepts
    /// none (RFC 6455 section 9.1).
    ///
    /// # Examples
    ///
    /// ```
    /// use wspush::extensions::Extensions;
    ///
    /// let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
    /// let accepted = Extensions::negotiate([offer], true);
    /// assert_eq!(accepted.deflate_window_bits(), Some(15));
    /// assert_eq!(
    ///     accepted.response_header().as_deref(),
    ///     Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    /// );
    /// // With compression off, the same offer is declined.
    /// assert!(Extensions::negotiate([offer], false).is_empty());
    /// ```
    pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a [u8]>, compression: bool) -> Extensions {
        if !compression {
            return Extensions::default();
        }
        offers
            .into_iter()
            .filter_map(|header| std::str::from_utf8(header).ok())
            .flat_map(|header| header.split(','))
            .find_map(deflate_offer)
            .map_or_else(Extensions::default, |bits| Extensions { deflate_window_bits: bits })
    }

    /// Whether nothing was negotiated.
    pub fn is_empty(&self) -> bool {
        self.deflate_window_bits == 0
    }

    /// permessage-deflate's window for what the server sends (`server_max_window_bits`,
    /// 8 to 15), if it was negotiated.
    pub fn deflate_window_bits(&self) -> Option<u8> {
        (self.deflate_window_bits != 0).then_some(self.deflate_window_bits)
    }

    /// The reserved bits these extensions let a peer set on the first frame of a data
    /// message: RSV1 (a compressed message) with permessage-deflate, else none.
    pub fn allowed_rsv(&self) -> Rsv {
        if self.is_empty() {
            Rsv::NONE
        } else {
            Rsv::RSV1
        }
    }

    /// The value of the `Sec-WebSocket-Extensions` header of the 101 response, if the
    /// response needs one.
    pub fn response_header(&self) -> Option<String> {
        let bits = self.deflate_window_bits()?;
        let mut answer =
            String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        if bits < MAX_WINDOW_BITS {
            answer.push_str(&format!("; server_max_window_bits={bits}"));
        }
        Some(answer)
    }
}

/// The server window for one extension of an offer (`permessage-deflate; a; b=1`) if it
/// is an acceptable permessage-deflate offer.
fn deflate_offer(extension: &str) -> Option<u8> {
    let mut parts = extension.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut server_bits = None;
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            // The client's window is its business: the server inflates with the largest.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                window_bits(value)?;
            }
            ("server_max_window_bits", Some(value)) => server_bits = Some(window_bits(value)?),
            _ => return None,
        }
        seen.push(name);
    }
    Some(server_bits.unwrap_or(MAX_WINDOW_BITS))
}

/// A parameter's value without the quotes of a quoted-string (RFC 7692 section 7.1.2
/// allows `"10"` for `10`).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// A `*_max_window_bits` value: one to two decimal digits, 8 to 15, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(offers: &[&str]) -> Extensions {
        Extensions::negotiate(offers.iter().map(|offer| offer.as_bytes()), true)
    }

    #[test]
    fn with_compression_off_every_offer_is_declined() {
        let offers: [&[u8]; 2] = [b"permessage-deflate; client_max_window_bits", b"x-webkit-deflate-frame"];
        for extensions in
            [Extensions::negotiate(offers, false), Extensions::negotiate([], true), Extensions::default()]
        {
            assert!(extensions.is_empty());
            assert_eq!(extensions.allowed_rsv(), Rsv::NONE);
            assert_eq!(extensions.response_header(), None);
            assert_eq!(extensions.deflate_window_bits(), None);
        }
        assert_eq!(std::mem::size_of::<Extensions>(), 1);
    }

    #[test]
    fn what_browsers_offer_is_accepted_with_both_no_context_takeovers() {
        // Chromium's and Firefox's offer.
        let extensions = negotiate(&["permessage-deflate; client_max_window_bits"]);
        assert_eq!(extensions.deflate_window_bits(), Some(15));
        assert_eq!(extensions.allowed_rsv(), Rsv::RSV1);
        assert_eq!(
            extensions.response_header().unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(negotiate(&["PerMessage-Deflate"]).deflate_window_bits(), Some(15));
    }

    #[test]
    fn a_server_window_asked_for_is_answered_and_honoured() {
        for bits in 8..=15u8 {
            let offer =
                format!("permessage-deflate; server_max_window_bits={bits}; server_no_context_takeover");
            let extensions = negotiate(&[&offer]);
            assert_eq!(extensions.deflate_window_bits(), Some(bits));
            let answer = extensions.response_header().unwrap();
            assert_eq!(answer.contains(&format!("server_max_window_bits={bits}")), bits < 15, "{answer}");
        }
        let quoted = negotiate(&["permessage-deflate; server_max_window_bits=\"10\""]);
        assert_eq!(quoted.deflate_window_bits(), Some(10));
    }

    #[test]
    fn a_bad_offer_is_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1x",
            "permessage-deflate; client_max_window_bits=99",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; x_unknown",
            "permessage-deflate; server_max_window_bits=\"10",
            "x-webkit-deflate-frame",
        ] {
            assert!(negotiate(&[bad]).is_empty(), "{bad} should be declined");
            let fallback = negotiate(&[&format!("{bad}, permessage-deflate; server_max_window_bits=12")]);
            assert_eq!(fallback.deflate_window_bits(), Some(12), "after {bad}");
            let second_header = negotiate(&[bad, "permessage-deflate"]);
            assert_eq!(second_header.deflate_window_bits(), Some(15), "after {bad}");
        }
        let not_utf8: &[u8] = b"permessage-deflate; \xff";
        assert!(Extensions::negotiate([not_utf8], true).is_empty());
    }
}
