//! What a long step shows while it runs.
//!
//! On a terminal every step is a spinner with its elapsed time; in CI (or whenever
//! stderr is not a terminal) the same steps are plain, greppable lines, one when a
//! step starts and one when it ends. Output goes to stderr so stdout stays for results.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Spinners on a terminal.
    Tty,
    /// One line per event, for CI logs.
    Plain,
    /// Nothing (tests, `--quiet`).
    Quiet,
}

/// A progress display shared by all the steps of a run (cheap to clone).
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Progress {
    /// Spinners on a terminal, plain lines when `CI` is set or stderr is redirected.
    pub fn from_env() -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let mode = if !ci && std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Plain
        };
        Self::new(mode)
    }

    pub fn new(mode: Mode) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Tty => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        Progress { mode, multi }
    }

    pub fn quiet() -> Self {
        Self::new(Mode::Quiet)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Starts a step; finish it with [`Step::done`] or [`Step::fail`] (dropping it
    /// unfinished clears the spinner).
    pub fn step(&self, message: impl Into<String>) -> Step {
        let message = message.into();
        let bar = match self.mode {
            Mode::Tty => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                        .expect("static template"),
                );
                bar.set_message(message.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            Mode::Plain => {
                eprintln!("[preflight] {message} ...");
                None
            }
            Mode::Quiet => None,
        };
        Step {
            mode: self.mode,
            message,
            bar,
            started: Instant::now(),
            last_plain: Instant::now(),
        }
    }

    /// A one-off line (a result, a hint), printed above any spinners.
    pub fn println(&self, line: impl AsRef<str>) {
        match self.mode {
            Mode::Tty => {
                let _ = self.multi.println(line.as_ref());
            }
            Mode::Plain => eprintln!("[preflight] {}", line.as_ref()),
            Mode::Quiet => {}
        }
    }
}

/// One running step of a [`Progress`].
pub struct Step {
    mode: Mode,
    message: String,
    bar: Option<ProgressBar>,
    started: Instant,
    last_plain: Instant,
}

impl Step {
    /// Updates the detail shown after the step's message (e.g. packages compiled).
    /// In plain mode, details are printed at most every 30 s so CI logs stay short.
    pub fn detail(&mut self, detail: impl AsRef<str>) {
        match self.mode {
            Mode::Tty => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{} ({})", self.message, detail.as_ref()));
                }
            }
            Mode::Plain => {
                if self.last_plain.elapsed() >= Duration::from_secs(30) {
                    self.last_plain = Instant::now();
                    eprintln!(
                        "[preflight] {} ... {} [{:.0}s]",
                        self.message,
                        detail.as_ref(),
                        self.started.elapsed().as_secs_f64()
                    );
                }
            }
            Mode::Quiet => {}
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Marks the step as done, with an optional note.
    pub fn done(mut self, note: impl AsRef<str>) -> Duration {
        self.finish("done", note.as_ref())
    }

    /// Marks the step as failed.
    pub fn fail(mut self, note: impl AsRef<str>) -> Duration {
        self.finish("FAILED", note.as_ref())
    }

    fn finish(&mut self, word: &str, note: &str) -> Duration {
        let elapsed = self.started.elapsed();
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(": {note}")
        };
        let line = format!(
            "{} {word}{note} [{:.1}s]",
            self.message,
            elapsed.as_secs_f64()
        );
        match (self.mode, self.bar.take()) {
            (Mode::Tty, Some(bar)) => {
                let mark = if word == "done" { "✓" } else { "✗" };
                bar.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
                bar.finish_with_message(format!("{mark} {line}"));
            }
            (Mode::Plain, _) => eprintln!("[preflight] {line}"),
            _ => {}
        }
        elapsed
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
