//! The least CPU a relay spends per message that arrives alone (one 64-byte message every
//! 100 us from a TCP "Redis", written as a WebSocket frame to a TCP "client"): epoll
//! (epoll_wait, read, write: what wspush's worker and uws do) against io_uring (one
//! io_uring_enter per message: the write and the next read submitted with the wait) and a
//! hybrid (epoll says what is readable; the write is submitted with the wait, a poll of the
//! epoll descriptor, through io_uring). A throwaway measurement, not part of wspush: see
//! README.md beside it.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const MSG: usize = 64;

/// CPU seconds (user + system), voluntary and involuntary context switches of this process.
fn usage() -> (f64, i64, i64) {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime) + t(ru.ru_stime), ru.ru_nvcsw, ru.ru_nivcsw)
}

/// Writes `payload` into `frame` as a binary WebSocket frame (short form), returning its length.
fn frame_into(frame: &mut [u8], payload: &[u8]) -> usize {
    let n = payload.len();
    frame[0] = 0x82;
    frame[1] = 126.min(n) as u8;
    frame[2..2 + n].copy_from_slice(payload);
    n + 2
}

/// An epoll descriptor (level-triggered) watching `src` for reading.
fn epoll_on(src: &TcpStream) -> i32 {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
    // SAFETY: plain system calls on descriptors this process owns; `ev` outlives the call.
    unsafe {
        let ep = libc::epoll_create1(0);
        assert!(ep >= 0 && libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, src.as_raw_fd(), &mut ev) == 0);
        ep
    }
}

/// A send of `frame` that posts no completion when it succeeds.
fn send_entry(sink: io_uring::types::Fd, frame: &[u8]) -> io_uring::squeue::Entry {
    io_uring::opcode::Send::new(sink, frame.as_ptr(), frame.len() as u32)
        .build()
        .flags(io_uring::squeue::Flags::SKIP_SUCCESS)
        .user_data(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args[1].as_str() {
        "source" => source(args[2].parse().unwrap(), args[3].parse().unwrap(), args[4].parse().unwrap()),
        "sink" => sink(args[2].parse().unwrap()),
        mode => relay(mode, args[2].parse().unwrap(), args[3].parse().unwrap()),
    }
}

fn source(port: u16, rate: u64, count: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    let msg = [b'x'; MSG];
    for i in 0..count {
        let due = start + gap * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        s.write_all(&msg).unwrap();
    }
}

fn sink(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    eprintln!("sink got {total} bytes");
}

fn relay(mode: &str, port: u16, count: u64) {
    let from = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let to = TcpListener::bind(("127.0.0.1", port + 1)).unwrap();
    let (mut sink, _) = to.accept().unwrap();
    sink.set_nodelay(true).unwrap();
    let (mut src, _) = from.accept().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut frame = vec![0u8; 65536 + 2];
    // Warm-up: the first 10% are not measured.
    let warm = count / 10;
    let mut got = 0u64;
    let mut start = None;
    let mut wakes = 0u64;
    let mut frames = 0u64;
    let measure = |got: u64, start: &mut Option<(f64, i64, i64, u64)>| {
        if start.is_none() && got >= warm * MSG as u64 {
            let (cpu, voluntary, involuntary) = usage();
            *start = Some((cpu, voluntary, involuntary, got));
        }
    };
    if mode == "epoll" {
        let ep = epoll_on(&src);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        loop {
            let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, -1) };
            assert!(n > 0);
            wakes += 1;
            let n = src.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let len = frame_into(&mut frame, &buf[..n]);
            sink.write_all(&frame[..len]).unwrap();
            got += n as u64;
            frames += 1;
            measure(got, &mut start);
        }
    } else if mode == "hybrid" {
        // epoll still says what is readable; io_uring only submits the write together with
        // the wait (a poll on the epoll descriptor), so writing and sleeping are one call.
        use io_uring::{opcode, types, IoUring};
        let ep = epoll_on(&src);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let mut ring = IoUring::new(64).unwrap();
        let kfd = types::Fd(sink.as_raw_fd());
        loop {
            let wait = opcode::PollAdd::new(types::Fd(ep), libc::POLLIN as u32).build().user_data(3);
            unsafe { ring.submission().push(&wait).unwrap() };
            ring.submit_and_wait(1).unwrap();
            for c in ring.completion() {
                assert!(c.result() >= 0, "completion failed {}", c.result());
            }
            wakes += 1;
            let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, 0) };
            assert!(n >= 0);
            if n == 0 {
                continue;
            }
            let n = src.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let len = frame_into(&mut frame, &buf[..n]);
            unsafe { ring.submission().push(&send_entry(kfd, &frame[..len])).unwrap() };
            got += n as u64;
            frames += 1;
            measure(got, &mut start);
        }
        // The last frame's send is submitted with no wait.
        ring.submit().unwrap();
    } else {
        use io_uring::{opcode, types, IoUring};
        let mut ring = IoUring::new(64).unwrap();
        let sfd = types::Fd(src.as_raw_fd());
        let kfd = types::Fd(sink.as_raw_fd());
        let recv =
            |buf: &mut [u8]| opcode::Recv::new(sfd, buf.as_mut_ptr(), buf.len() as u32).build().user_data(1);
        unsafe { ring.submission().push(&recv(&mut buf)).unwrap() };
        'outer: loop {
            ring.submit_and_wait(1).unwrap();
            wakes += 1;
            let cqes: Vec<_> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
            for (ud, res) in cqes {
                if ud != 1 {
                    assert!(res >= 0, "send failed {res}");
                    continue;
                }
                assert!(res >= 0, "recv failed {res}");
                let n = res as usize;
                if n == 0 {
                    break 'outer;
                }
                let len = frame_into(&mut frame, &buf[..n]);
                let send = send_entry(kfd, &frame[..len]);
                // The send is done (copied into the socket) before the next recv completes:
                // the frame buffer is reused only after a later completion.
                unsafe {
                    ring.submission().push(&send).unwrap();
                    ring.submission().push(&recv(&mut buf)).unwrap();
                }
                got += n as u64;
                frames += 1;
                measure(got, &mut start);
            }
        }
    }
    let (c1, v1, i1) = usage();
    let (c0, v0, i0, g0) = start.unwrap();
    let msgs = (got - g0) as f64 / MSG as f64;
    println!(
        "{{\"mode\":\"{mode}\",\"frames\":{frames},\"messages\":{},\"cpu_us_per_message\":{:.3},\"cpu_s_per_100k\":{:.3},\"voluntary_switches_per_message\":{:.3},\"involuntary_per_message\":{:.3},\"wakes_per_message\":{:.3}}}",
        msgs as u64,
        (c1 - c0) / msgs * 1e6,
        (c1 - c0) / msgs * 1e5,
        (v1 - v0) as f64 / msgs,
        (i1 - i0) as f64 / msgs,
        wakes as f64 / (got as f64 / MSG as f64)
    );
    drop(sink);
}
