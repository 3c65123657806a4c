//! Id → worker dispatch: `Engine::send` to many ids, through the lock-free command queues.
//!
//! Every send validates the id, frames the message once, hashes the id to its worker and
//! queues the command there (waking the worker only if it may be asleep); the worker looks
//! the id up. Here no id has a socket, so nothing is written: what is measured is the cost
//! of routing alone, from the caller's first `send` until both workers have handled every
//! command, i.e. the most sends per second a node can route before any socket I/O.
//!
//! Run with `cargo bench --bench dispatch`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wspush::{Config, Engine, Message, Receipt};

/// Distinct ids sent to, none of which has a socket.
const IDS: usize = 1_000;

/// A typical small JSON event.
const PAYLOAD: &str = r#"{"type":"order.shipped","order":456,"eta":"2024-05-01T10:00:00Z"}"#;

/// How long a batch may take before the bench gives up (it would mean a lost command).
const TIMEOUT: Duration = Duration::from_secs(30);

/// `batch` sends spread over 1,000 ids, then waits for both workers to have handled them.
fn bench_dispatch(c: &mut Criterion) {
    let config = Config { ws_listen: None, workers: 2, ..Config::default() };
    // Each worker gets about half of a batch, plus the closing broadcast: the batch must fit
    // in one worker's queue, or `send` would fail with `QueueFull` (a bug in this bench).
    let queue_capacity = config.command_queue_capacity;
    let engine = Engine::start(config).expect("the engine starts");
    let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i}")).collect();
    let (done_tx, done_rx) = mpsc::channel::<Receipt>();

    let mut group = c.benchmark_group("dispatch");
    // An iteration takes milliseconds: fewer, longer samples fit the default 5 s.
    group.sample_size(20);
    for batch in [1_000usize, 10_000] {
        assert!(batch < queue_capacity, "a batch of {batch} could overflow a worker's queue");
        group.throughput(Throughput::Elements(batch as u64));
        // Time from the first send until the receipt of a broadcast queued behind the batch:
        // each worker's queue is FIFO, and the receipt fires once every worker has handled
        // the broadcast, hence everything queued before it.
        group.bench_function(BenchmarkId::new("send_to_ids_without_sockets", batch), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for i in 0..batch {
                        engine
                            .send(&ids[i % IDS], Message::Text(PAYLOAD))
                            .expect("send (a QueueFull here means the batch is too large)");
                    }
                    let done = done_tx.clone();
                    engine
                        .broadcast_with_receipt(Message::Text("end of batch"), move |receipt| {
                            let _ = done.send(receipt);
                        })
                        .expect("broadcast");
                    let receipt = done_rx.recv_timeout(TIMEOUT).expect("the workers handle the batch");
                    total += start.elapsed();
                    assert_eq!(receipt.sockets, 0, "no socket is connected");
                }
                total
            })
        });
    }
    group.finish();
    engine.shutdown(Duration::from_secs(5));
}

criterion_group!(benches, bench_dispatch);
criterion_main!(benches);
