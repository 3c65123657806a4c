//! Connections to the masters of a Redis Cluster, one per master, opened when first needed
//! (with the scripts loaded) and dropped when the master fails or leaves the map. The
//! publisher and the reader each keep a pool of their own, as each keeps its own connection
//! to a single Redis.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use super::endpoint::Endpoint;
use super::reader::load_script;
use super::scripts::Script;
use super::slots::Node;

pub(super) struct NodePool<'a> {
    endpoint: &'a Endpoint,
    /// Loaded on every new connection (a node may have restarted with an empty script cache).
    scripts: Vec<&'static Script>,
    connections: HashMap<Node, MultiplexedConnection>,
}

impl<'a> NodePool<'a> {
    pub fn new(endpoint: &'a Endpoint, scripts: Vec<&'static Script>) -> Self {
        Self { endpoint, scripts, connections: HashMap::new() }
    }

    /// A connection to `node` (a handle sharing the pool's: clones pipeline on one socket).
    ///
    /// # Errors
    ///
    /// Why `node` could not be reached or would not load the scripts.
    pub async fn get(&mut self, node: &Node) -> Result<MultiplexedConnection, String> {
        if let Some(connection) = self.connections.get(node) {
            return Ok(connection.clone());
        }
        let mut connection =
            self.endpoint.node_connection(&node.0, node.1).await.map_err(|e| e.to_string())?;
        for script in &self.scripts {
            load_script(&mut connection, script).await?;
        }
        self.connections.insert(node.clone(), connection.clone());
        Ok(connection)
    }

    /// `node` failed: its next use connects again.
    pub fn forget(&mut self, node: &Node) {
        self.connections.remove(node);
    }

    /// Drops the connections to nodes that are no longer among `masters`.
    pub fn keep_only(&mut self, masters: &[Node]) {
        self.connections.retain(|node, _| masters.contains(node));
    }
}
