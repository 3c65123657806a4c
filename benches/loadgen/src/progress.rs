//! A one-line progress bar on stderr for the long phases (connecting, publishing,
//! waiting for the last deliveries), redrawn at most five times a second.

use std::io::Write;
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    last_draw: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new(label: &str, total: u64, enabled: bool) -> Self {
        Progress { label: label.into(), total, last_draw: None, enabled }
    }

    pub fn set(&mut self, done: u64) {
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.last_draw = Some(Instant::now());
        self.draw(done);
    }

    fn draw(&self, done: u64) {
        const WIDTH: u64 = 30;
        let filled = (done.min(self.total) * WIDTH).checked_div(self.total).unwrap_or(WIDTH) as usize;
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH as usize - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r  {:<28} [{bar}] {done}/{}   ", self.label, self.total);
        let _ = err.flush();
    }

    pub fn finish(&mut self, done: u64) {
        if self.enabled {
            self.draw(done);
            eprintln!();
        }
    }
}
