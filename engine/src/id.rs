//! Ids: who a socket belongs to.

use crate::Error;

/// The longest id, in bytes of UTF-8.
pub const MAX_ID_LEN: usize = 128;

/// Checks that `id` is a valid id: 1 to [`MAX_ID_LEN`] bytes, no `/`.
///
/// # Errors
///
/// [`Error::InvalidId`] saying which rule the id breaks.
pub fn validate_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::InvalidId("the id is empty".into()));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::InvalidId(format!(
            "the id is {} bytes long, at most {MAX_ID_LEN} are allowed",
            id.len()
        )));
    }
    if id.contains('/') {
        return Err(Error::InvalidId("the id contains `/`".into()));
    }
    Ok(())
}

/// The worker that owns every socket of `id`: FNV-1a, cheap on short ids and the same in
/// every run, so a test or benchmark that places ids on workers is reproducible. Nothing
/// outside this process relies on it: in cluster mode each node routes to its own workers.
/// Callers route through [`Mailboxes`](crate::worker::Mailboxes), not this.
pub(crate) fn worker_of(id: &str, workers: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in id.as_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("456").is_ok());
        assert!(validate_id(&"x".repeat(MAX_ID_LEN)).is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(validate_id("a/b").is_err());
    }

    #[test]
    fn the_worker_of_an_id_is_stable() {
        assert_eq!(worker_of("456", 4), worker_of("456", 4));
        assert_eq!(worker_of("anything", 1), 0);
        let spread: std::collections::HashSet<_> = (0..100).map(|i| worker_of(&i.to_string(), 4)).collect();
        assert_eq!(spread.len(), 4);
    }
}
