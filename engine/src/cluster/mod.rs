//! Cluster mode: a fleet of nodes that share nothing but Redis.
//!
//! A node SUBSCRIBEs `{prefix}u:{id}` while it holds a socket of `id`, and `{prefix}all`
//! for broadcasts. A send is delivered to local sockets at once and published (as an
//! [`envelope`]) for the other nodes; a node skips envelopes from itself, so every socket
//! gets exactly one copy. Subscriptions are batched (many channels per command), publishes
//! are pipelined (everything pending in one round trip), and both connections reconnect
//! with jittered backoff, resubscribing every held id.
//!
//! Without history, delivery across nodes is at most once: Redis pub/sub keeps nothing for a
//! node that is disconnected, and a pipeline in flight when the connection drops is counted
//! as lost. With history (`history_size` > 0) a send is an append (`scripts`, `lua/`):
//! Redis gives it an offset, keeps it in the id's stream and publishes it positioned (a
//! version 2 envelope) to every node, the sender included (it does not deliver locally
//! first); a failed append is retried idempotently, and the `reader` reads what a node or a
//! client missed. Redis's SUBSCRIBE confirmations reach the workers (`routing`) as the
//! barrier for an id's position, and a lost subscription makes every id catch up
//! (`worker/live.rs`): delivery is exactly once within the history.
//!
//! The engine and the workers see only the [`ClusterLink`], which enqueues and never
//! blocks; everything that talks to Redis runs in the `backplane` task (hosted by worker 0,
//! or by its helper thread while worker 0 is busy). So a backplane of another kind (sharded
//! pub/sub, Sentinel, streams) replaces the task's side (`connect`, `publisher`,
//! `subscriber`) and reuses the link, the channel names, the counters and the routing to
//! the workers, which alone knows the workers' API.

mod backplane;
mod channels;
pub mod compat;
mod config;
mod connect;
mod endpoint;
pub mod envelope;
mod link;
mod node_pool;
mod publisher;
mod reader;
mod redis_tls;
mod redis_url;
pub(crate) mod resp;
mod routing;
mod scripts;
mod sentinel;
mod sharded_publisher;
mod sharded_subscriber;
mod slots;
mod stats;
mod subscriber;
mod subscription;
#[cfg(test)]
mod test_redis;
mod topology;

pub(crate) use backplane::Backplane;
pub use config::ClusterConfig;
pub(crate) use link::ClusterLink;
pub(crate) use reader::ReadFailed;
pub use stats::ClusterStats;
pub(crate) use stats::{CLUSTER_COUNTERS, CLUSTER_STATE};
