//! The workers: each a thread with a `mio` event loop that owns its sockets, reached only
//! through its command queue.

mod backplane;
mod budget;
mod connection;
mod core;
mod event_loop;
mod history;
mod hosted;
mod input;
mod live;
mod mailbox;
mod output;
mod settings;

pub(crate) use self::backplane::Backplane;
pub(crate) use self::budget::NodeBuffer;
pub(crate) use self::core::WorkerShared;
pub(crate) use self::event_loop::Worker;
#[cfg(test)]
pub(crate) use self::event_loop::CARRIED_COMMANDS;
pub(crate) use self::hosted::{HostedTask, Task};
pub(crate) use self::mailbox::{Adoption, Mailboxes, Pending, Refused};
pub(crate) use self::settings::WorkerSettings;
