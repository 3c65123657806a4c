//! Client-to-server masking (RFC 6455 section 5.3).

/// XORs `buf` with `mask`, where `buf` starts `offset` bytes into the masked payload.
///
/// Masking is its own inverse, so this both masks and unmasks. Works on 8 bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut mask = mask;
    mask.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    // Unaligned 8-byte loads and stores are as fast as aligned ones on the targets that
    // matter, and this keeps the code free of `unsafe`; LLVM vectorises the loop.
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4: the mask phase is unchanged.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    #[test]
    fn apply_mask_matches_a_naive_implementation() {
        let data: Vec<u8> = (0..40).map(|i| (i % 251) as u8).collect();
        for offset in 0..8 {
            for len in 0..data.len() {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, MASK, offset);
                let naive: Vec<u8> =
                    data[..len].iter().enumerate().map(|(i, b)| b ^ MASK[(offset + i) % 4]).collect();
                assert_eq!(fast, naive, "offset {offset}, len {len}");
            }
        }
        // Unmasking in two pieces equals unmasking at once.
        let mut whole = data.clone();
        apply_mask(&mut whole, MASK, 0);
        let mut pieces = data.clone();
        let (head, tail) = pieces.split_at_mut(13);
        apply_mask(head, MASK, 0);
        apply_mask(tail, MASK, 13);
        assert_eq!(whole, pieces);
    }
}
