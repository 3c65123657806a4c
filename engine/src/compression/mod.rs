//! permessage-deflate (RFC 7692) on the wire: compressing what a worker sends and inflating
//! what clients send. Negotiation is in [`crate::extensions`].
//!
//! Both directions work message by message (no context takeover either way), so the state
//! is the worker's, never a socket's: one [`FrameCompressor`] and one [`Inflater`] per
//! worker, whatever the number of sockets.

mod compressor;
mod inflater;

pub(crate) use compressor::FrameCompressor;
pub(crate) use inflater::{InflateError, Inflater};

/// What every message compressed with a sync flush ends with, and what RFC 7692 section
/// 7.2.1 has the sender remove (and the receiver put back before inflating).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
