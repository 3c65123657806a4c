//! The names of the Redis channels (and history keys) wspush uses, all derived from the
//! configuration here, so that a backplane of another kind (sharded pub/sub, streams) names
//! them the same way. With a Redis Cluster the id is written in braces (`wspush:u:{456}`):
//! the hash tag that puts an id's channel, stream and meta hash in one slot (`slots`).

use super::ClusterConfig;

/// Every channel of one node's configuration.
#[derive(Debug)]
pub(super) struct Channels {
    /// `{prefix}u:`: a user channel is this followed by the id.
    user_prefix: String,
    /// `{prefix}h:`: an id's history stream is this followed by the id.
    history_prefix: String,
    /// `{prefix}m:`: an id's history meta hash (epoch, top offset, publishers' seqs).
    meta_prefix: String,
    /// A Redis Cluster: ids go in braces, and the user channels and `all` are sharded
    /// channels (SSUBSCRIBE, SPUBLISH) while the compat and inbound ones stay classic.
    pub sharded: bool,
    /// `{prefix}all`: broadcasts.
    pub all: String,
    /// Where clients' messages are published for backend services, if they are.
    pub inbound: Option<String>,
    /// The channel of the original JSON format, subscribed when configured.
    pub compat: Option<String>,
    /// The compat channel again, when this node also publishes the original format.
    pub compat_publish: Option<String>,
}

impl Channels {
    pub fn new(config: &ClusterConfig) -> Self {
        let inbound = config
            .publish_inbound
            .then(|| config.inbound_channel.clone().unwrap_or_else(|| format!("{}inbound", config.prefix)));
        Self {
            user_prefix: format!("{}u:", config.prefix),
            history_prefix: format!("{}h:", config.prefix),
            meta_prefix: format!("{}m:", config.prefix),
            sharded: config.is_redis_cluster(),
            all: format!("{}all", config.prefix),
            inbound,
            compat: config.compat_channel.clone(),
            compat_publish: config.compat_publish.then(|| config.compat_channel.clone()).flatten(),
        }
    }

    /// The channel of `id`'s sockets.
    pub fn user(&self, id: &str) -> String {
        self.name(&self.user_prefix, id)
    }

    /// The key of `id`'s history stream (entries `OFFSET-0`, one field `t` or `b`).
    pub fn history(&self, id: &str) -> String {
        self.name(&self.history_prefix, id)
    }

    /// The key of `id`'s history meta hash (`e` epoch, `s` top offset, `p:<incarnation>`).
    pub fn history_meta(&self, id: &str) -> String {
        self.name(&self.meta_prefix, id)
    }

    fn name(&self, prefix: &str, id: &str) -> String {
        match self.sharded {
            true => format!("{prefix}{{{id}}}"),
            false => format!("{prefix}{id}"),
        }
    }

    /// The id whose channel `channel` is, if it is a user channel.
    pub fn id_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.user_prefix.as_str())?;
        match self.sharded {
            true => rest.strip_prefix('{')?.strip_suffix('}'),
            false => Some(rest),
        }
    }

    /// Whether `channel` is published and subscribed sharded (SPUBLISH, SSUBSCRIBE): a user
    /// channel or `all` on a Redis Cluster.
    pub fn is_sharded(&self, channel: &str) -> bool {
        self.sharded && (channel == self.all || channel.starts_with(self.user_prefix.as_str()))
    }

    /// What a fresh subscriber connection subscribes to: broadcasts, the compat channel and
    /// the channel of every id in `held`.
    pub fn subscribed<'a>(&self, held: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut channels = vec![self.all.clone()];
        channels.extend(self.compat.clone());
        channels.extend(held.into_iter().map(|id| self.user(id)));
        channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_is_named_from_the_prefix() {
        let config = ClusterConfig { prefix: "p:".into(), ..ClusterConfig::new("redis://h") };
        let channels = Channels::new(&config);
        assert_eq!(channels.user("42"), "p:u:42");
        assert_eq!(channels.id_of("p:u:42"), Some("42"));
        assert_eq!(channels.history("42"), "p:h:42");
        assert_eq!(channels.history_meta("42"), "p:m:42");
        assert_eq!(channels.id_of("p:h:42"), None, "a history key is no channel");
        assert_eq!(channels.id_of("p:all"), None);
        assert_eq!(channels.all, "p:all");
        assert_eq!(channels.inbound.as_deref(), Some("p:inbound"));
        assert_eq!(channels.compat, None);
        assert_eq!(channels.subscribed(["a", "b"]), ["p:all", "p:u:a", "p:u:b"]);
    }

    #[test]
    fn with_a_redis_cluster_each_id_is_its_names_hash_tag() {
        let config = ClusterConfig {
            compat_channel: Some("legacy".into()),
            ..ClusterConfig::new("redis+cluster://h:7000")
        };
        let channels = Channels::new(&config);
        assert_eq!(channels.user("4}5"), "wspush:u:{4}5}");
        assert_eq!(channels.history("456"), "wspush:h:{456}");
        assert_eq!(channels.history_meta("456"), "wspush:m:{456}");
        assert_eq!(channels.id_of("wspush:u:{4}5}"), Some("4}5"));
        assert_eq!(channels.id_of("wspush:u:456"), None);
        for id in ["456", "4}5", "{x", "a{b}c"] {
            let slot = |name: String| super::super::slots::slot_of(name.as_bytes());
            assert_eq!(slot(channels.user(id)), slot(channels.history(id)), "{id}");
            assert_eq!(slot(channels.user(id)), slot(channels.history_meta(id)), "{id}");
        }
        assert!(channels.is_sharded("wspush:u:{456}") && channels.is_sharded("wspush:all"));
        assert!(!channels.is_sharded("legacy") && !channels.is_sharded("wspush:inbound"));
        assert!(!Channels::new(&ClusterConfig::new("redis://h")).is_sharded("wspush:all"));
    }

    #[test]
    fn optional_channels_follow_their_settings() {
        let config = ClusterConfig {
            compat_channel: Some("legacy".into()),
            inbound_channel: Some("in".into()),
            ..ClusterConfig::new("redis://h")
        };
        let channels = Channels::new(&config);
        assert_eq!(channels.inbound.as_deref(), Some("in"));
        assert_eq!(channels.compat.as_deref(), Some("legacy"));
        assert_eq!(channels.compat_publish, None);
        assert_eq!(channels.subscribed(["7"]), ["wspush:all", "legacy", "wspush:u:7"]);

        let publishing = Channels::new(&ClusterConfig { compat_publish: true, ..config.clone() });
        assert_eq!(publishing.compat_publish.as_deref(), Some("legacy"));
        let silent = Channels::new(&ClusterConfig { publish_inbound: false, ..config });
        assert_eq!(silent.inbound, None);
    }
}
