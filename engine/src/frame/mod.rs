//! RFC 6455 framing: encoding server frames and decoding client frames.
//!
//! Everything here is pure (no I/O) so that it can be unit tested and fuzzed on its own.
//! The server never masks and never fragments what it sends; it accepts whatever a
//! conforming client may send and fails the connection on anything else, with the close
//! code the RFC (and the Autobahn TestSuite) expects.
//!
//! Split by job, all re-exported here: `coding` (opcodes, close codes and which are
//! valid), `header` (the header's bits, reserved bits included), `decode` (client frames
//! in), `encode` (frames out), `mask` (masking).

mod coding;
mod decode;
mod encode;
mod header;
mod mask;
#[cfg(test)]
mod test_support;

pub use coding::{close_code, is_valid_close_code, OpCode, MAX_CONTROL_PAYLOAD};
pub use decode::{Decoder, Frame, ProtocolError};
pub(crate) use encode::server_payload_start;
pub use encode::{encode, encode_close, encode_frame, encode_masked, encode_message};
pub use header::{Rsv, MAX_HEADER_LEN};
pub use mask::apply_mask;
