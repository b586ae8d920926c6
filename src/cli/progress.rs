//! A one-line progress bar on stderr, drawn only for a terminal, so piped
//! output and CI logs stay clean.

use std::io::{IsTerminal, Write};

/// Progress of `total` steps of one task.
pub struct Progress {
    label: String,
    total: u64,
    /// Steps done so far.
    pub done: u64,
    draw: bool,
}

impl Progress {
    /// A bar for `total` steps, titled `label`.
    pub fn new(label: &str, total: u64) -> Self {
        Self { label: label.to_owned(), total, done: 0, draw: total > 1 && std::io::stderr().is_terminal() }
    }

    /// One more step done; `note` is shown after the count.
    pub fn tick(&mut self, note: impl std::fmt::Display) {
        self.done += 1;
        // Redrawing every step would cost more than a fast step itself.
        let every = (self.total / 200).max(1);
        if self.draw && (self.done.is_multiple_of(every) || self.done == self.total) {
            let width = 30;
            let filled = (self.done * width / self.total.max(1)).min(width) as usize;
            eprint!(
                "\r{} [{}{}] {}/{}{}",
                self.label,
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                self.done,
                self.total,
                note
            );
            let _ = std::io::stderr().flush();
        }
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        if self.draw {
            eprintln!();
        }
    }
}
