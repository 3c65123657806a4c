//! The engine's error type.

use std::io;

/// Everything that can go wrong when starting or driving an [`Engine`](crate::Engine).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range; `setting` names it.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidConfig {
        /// The name of the setting, as in [`Config`](crate::Config).
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// An id is empty, longer than [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes, or has a `/`.
    #[error("invalid id: {0}")]
    InvalidId(String),
    /// A message to push is larger than
    /// [`Config::max_outbound_message_size`](crate::Config::max_outbound_message_size);
    /// nothing was sent.
    #[error("the message is {size} bytes, larger than max_outbound_message_size ({max} bytes)")]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The largest message the node pushes.
        max: usize,
    },
    /// A worker's command queue is full: the engine is overloaded; try again later.
    #[error("the worker's command queue is full")]
    QueueFull,
    /// The engine has been shut down.
    #[error("the engine is shut down")]
    ShutDown,
    /// Cluster mode: Redis could not answer (unreachable, or the connection failed with the
    /// request under way); try again later.
    #[error("Redis could not answer: {0}")]
    Unavailable(String),
    /// An operating system error (binding the listener, registering a socket).
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}
