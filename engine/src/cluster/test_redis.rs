//! A `redis-server` of a unit test's own (the integration tests' helper lives in the test
//! crate, which the engine cannot depend on): loopback, a free port, optionally AOF with
//! `appendfsync always` in a directory of its own, killed with SIGKILL on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for Redis to start, or for anything it expects.
pub(super) const TIMEOUT: Duration = Duration::from_secs(20);

pub(super) struct TestRedis {
    child: Option<Child>,
    port: u16,
    /// The AOF directory, when persistent.
    dir: Option<PathBuf>,
}

impl TestRedis {
    /// Redis with nothing persisted.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Redis with AOF, `appendfsync always`: a write it acknowledged survives a SIGKILL.
    pub fn start_aof() -> Self {
        Self::start_with(true)
    }

    fn start_with(aof: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = aof.then(|| {
            let dir = std::env::temp_dir().join(format!("wspush-redis-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("an AOF directory");
            dir
        });
        let mut redis = Self { child: None, port, dir };
        redis.restart();
        redis
    }

    /// (Re)starts the process on the same port and waits until it answers PING (reloading
    /// the AOF first, when persistent).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        command.args(["--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"]);
        match &self.dir {
            Some(dir) => {
                command.arg("--dir").arg(dir);
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not start", self.port);
            // Polling a process that is starting: there is nothing to wait on instead.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id (for its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain synchronous connection, for the test's own checks.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).unwrap();
        let connection =
            client.get_connection_with_timeout(TIMEOUT).expect("a connection to the test's Redis");
        connection.set_read_timeout(Some(TIMEOUT)).unwrap();
        connection
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill9();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A link with its publisher and reader running against a Redis, as the backplane task
/// runs them (no subscriber: tests read Redis's side themselves). Stopped on drop.
pub(super) struct Running {
    pub link: std::sync::Arc<super::link::ClusterLink>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// History on (`history_size`), node id `me`, prefix `t:`.
    pub fn start(url: &str, history_size: usize) -> Self {
        let config = super::ClusterConfig {
            prefix: "t:".into(),
            node_id: Some("me".into()),
            history_size,
            ..super::ClusterConfig::new(url)
        };
        let (link, ends) = super::link::ClusterLink::new(&config, 1 << 20);
        let endpoint = super::endpoint::Endpoint::of(&config).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let running = link.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let (_lost, lost_seen) = tokio::sync::watch::channel(0u64);
                let publisher = super::publisher::publish_loop(
                    &endpoint,
                    ends.outbound,
                    running.clone(),
                    lost_seen,
                    stopped.clone(),
                );
                let reader = super::reader::read_loop(&endpoint, ends.reads, running, stopped);
                tokio::join!(publisher, reader);
            })
        });
        Self { link, stop, thread: Some(thread) }
    }

    /// Waits (at most [`TIMEOUT`]) until `condition` holds; it is checked after every
    /// millisecond, as there is no event to wait on for a counter or a Redis key.
    pub fn wait_until(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
