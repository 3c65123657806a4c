//! The settings a worker uses, in the units it uses them.

use crate::config::SlowConsumerPolicy;
use crate::Config;

/// A worker's share of [`Config`], converted once at start.
#[derive(Clone)]
pub(crate) struct WorkerSettings {
    pub(super) max_message_size: usize,
    pub(super) max_buffered_bytes: usize,
    pub(super) slow_consumer: SlowConsumerPolicy,
    pub(super) ping_interval_ms: u64,
    pub(super) idle_timeout_ms: u64,
    pub(super) echo: bool,
    /// permessage-deflate may be negotiated: the worker compresses and inflates.
    pub(super) compression: bool,
    pub(super) compression_threshold: usize,
    pub(super) compression_level: u32,
    /// 1 s / `max_inbound_messages_per_second`, in ns; 0: unlimited.
    pub(super) frame_interval_ns: u64,
    /// `max_inbound_bytes_per_second`; 0: unlimited.
    pub(super) bytes_per_second: u64,
    /// `history_size`; 0: history off.
    pub(super) history_size: usize,
    pub(super) history_ttl: std::time::Duration,
    /// This worker's share of `history_max_bytes`.
    pub(super) history_max_bytes: usize,
}

impl WorkerSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_message_size: config.max_message_size,
            max_buffered_bytes: config.max_buffered_bytes,
            slow_consumer: config.slow_consumer,
            ping_interval_ms: config.ping_interval.as_millis() as u64,
            idle_timeout_ms: config.idle_timeout.as_millis() as u64,
            echo: config.echo,
            compression: config.compression,
            compression_threshold: config.compression_threshold,
            compression_level: config.compression_level,
            frame_interval_ns: config
                .max_inbound_messages_per_second
                .map_or(0, |rate| (1_000_000_000 / u64::from(rate.max(1))).max(1)),
            bytes_per_second: config.max_inbound_bytes_per_second.unwrap_or(0),
            history_size: config.history_size,
            history_ttl: config.history_ttl,
            history_max_bytes: (config.history_max_bytes / config.effective_workers()).max(1),
        }
    }

    /// Whether any inbound rate is limited.
    pub(super) fn limits_inbound_rate(&self) -> bool {
        self.frame_interval_ns > 0 || self.bytes_per_second > 0
    }

    /// How often timers are checked: often enough for the shortest of them.
    pub(super) fn tick_ms(&self) -> u64 {
        [self.ping_interval_ms, self.idle_timeout_ms]
            .into_iter()
            .filter(|&ms| ms > 0)
            .map(|ms| ms / 4)
            .fold(1_000, u64::min)
            .max(10)
    }
}
