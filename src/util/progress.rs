//! Progress reporting: one place that decides whether bars are drawn.
//!
//! Bars go to stderr and are hidden when stderr is not a terminal or the user asked for `--quiet`;
//! stdout stays clean for data and `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Debug)]
pub struct Progress {
    visible: bool,
    stream: bool,
}

impl Progress {
    /// Bars shown if stderr is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Progress {
        Progress { visible: !quiet && std::io::stderr().is_terminal(), stream: false }
    }

    /// A reporter that never draws (library callers, tests).
    pub fn hidden() -> Progress {
        Progress { visible: false, stream: false }
    }

    /// Also print what scripts print, line by line on stderr, while they run (`build -v`).
    pub fn streaming(mut self, stream: bool) -> Progress {
        self.stream = stream;
        self
    }

    /// Whether scripts' output is printed as it comes.
    pub fn streams_output(&self) -> bool {
        self.stream
    }

    fn make(&self, len: u64, template: &str, msg: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), self.target());
        bar.set_style(ProgressStyle::with_template(template).expect("valid progress template").progress_chars("=> "));
        bar.set_message(msg.to_string());
        bar
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.visible {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A bar counting bytes.
    pub fn bytes(&self, len: u64, msg: &str) -> ProgressBar {
        self.make(len, "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}", msg)
    }

    /// A bar counting items.
    pub fn items(&self, len: u64, msg: &str) -> ProgressBar {
        self.make(len, "{msg:>12} [{bar:30}] {human_pos}/{human_len} {per_sec}", msg)
    }

    /// A spinner for work of unknown length.
    pub fn spinner(&self, msg: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.target());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {human_pos}").expect("valid progress template"));
        bar.set_message(msg.to_string());
        bar
    }
}
