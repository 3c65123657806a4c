//! A failed call, as the exported functions' bodies return it: a status and a message.

use crate::status::wspush_status;

/// A failed call: its status and what went wrong.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: wspush_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: wspush_status, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn null(what: &str) -> Self {
        Self::new(wspush_status::NullArgument, format!("`{what}` is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(wspush_status::InvalidArgument, message)
    }
}

impl From<engine::Error> for Failure {
    fn from(error: engine::Error) -> Self {
        let status = match &error {
            engine::Error::InvalidConfig { .. } => wspush_status::InvalidConfig,
            engine::Error::InvalidId(_) => wspush_status::InvalidId,
            engine::Error::MessageTooLarge { .. } => wspush_status::InvalidArgument,
            engine::Error::QueueFull => wspush_status::QueueFull,
            engine::Error::ShutDown => wspush_status::ShutDown,
            engine::Error::Io { .. } => wspush_status::Io,
            _ => wspush_status::Internal,
        };
        Self::new(status, error.to_string())
    }
}
