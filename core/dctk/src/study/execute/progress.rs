//! What `dctk run` shows while cells run, on a terminal and off one.
//!
//! - [`ProgressMode::Bars`] (stderr is a terminal): one indicatif bar per running cell and
//!   one for the round.
//! - [`ProgressMode::Lines`] (stderr is a pipe or a file: `make quickstart | tee log`, a CI
//!   log, a Slurm `.out` file): bars would draw nothing there, so every cell event is one
//!   line (`start`, each evaluation, `done`/`failed`/`stopped`), and every `interval` a status
//!   line per running cell (step/total, train loss, tokens/s, ETA) and one for the round.
//! - [`ProgressMode::Off`] (`--quiet`): failures only.
//!
//! `DCTK_PROGRESS=bars|lines|off` overrides the choice; `DCTK_PROGRESS_INTERVAL_S` sets the
//! status interval (default 30 s).
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Lines,
    Off,
}

impl ProgressMode {
    /// `--quiet` → off; else `DCTK_PROGRESS` when set; else bars on a terminal, lines otherwise.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            return ProgressMode::Off;
        }
        match std::env::var("DCTK_PROGRESS").ok().as_deref() {
            Some("bars") => ProgressMode::Bars,
            Some("lines") => ProgressMode::Lines,
            Some("off") => ProgressMode::Off,
            _ if std::io::stderr().is_terminal() => ProgressMode::Bars,
            _ => ProgressMode::Lines,
        }
    }
}

/// The last reported state of one running cell.
#[derive(Clone, Debug)]
struct CellState {
    label: String,
    id: String,
    /// When the process was launched.
    launched: Instant,
    /// When its first step was reported (the ETA's clock).
    started: Instant,
    step: u64,
    total_steps: u64,
    loss: f64,
    tokens_per_s: f64,
    /// Steps already done when this process started it (a resumed cell): the ETA counts
    /// only the steps trained here.
    first_step: Option<u64>,
    requests: Option<(u64, u64)>,
}

/// The display of one round: shared by the executor loop and the threads that read each
/// cell process's progress pipe.
#[derive(Clone)]
pub struct RoundProgress {
    mode: ProgressMode,
    multi: MultiProgress,
    overall: ProgressBar,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    cells: BTreeMap<usize, CellState>,
    total: usize,
    ended: usize,
    failed: usize,
    started: Instant,
    last_status: Instant,
    interval: Duration,
}

/// One cell's handle on the display.
#[derive(Clone)]
pub struct CellProgress {
    round: RoundProgress,
    slot: usize,
    bar: ProgressBar,
}

fn lines_out(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// `1h02m`, `3m05s`, `42s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl RoundProgress {
    /// The display of a round of `total` cells.
    pub fn new(mode: ProgressMode, total: usize) -> RoundProgress {
        let target = if mode == ProgressMode::Bars { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(ProgressStyle::with_template("cells [{bar:30}] {pos}/{len} {msg} ({elapsed})").unwrap().progress_chars("=> "));
        let interval_s = std::env::var("DCTK_PROGRESS_INTERVAL_S").ok().and_then(|v| v.parse::<f64>().ok()).filter(|v| *v > 0.0).unwrap_or(30.0);
        let now = Instant::now();
        let inner = Inner {
            cells: BTreeMap::new(),
            total,
            ended: 0,
            failed: 0,
            started: now,
            last_status: now,
            interval: Duration::from_secs_f64(interval_s),
        };
        RoundProgress { mode, multi, overall, inner: Arc::new(Mutex::new(inner)) }
    }

    /// A line above the bars (bars), on stderr (lines), or nowhere (off).
    pub fn println(&self, line: &str) {
        match self.mode {
            ProgressMode::Bars => self.multi.suspend(|| lines_out(line)),
            ProgressMode::Lines => lines_out(line),
            ProgressMode::Off => {}
        }
    }

    /// A cell process started.
    pub fn cell_started(&self, label: &str, id: &str) -> CellProgress {
        let slot = {
            let mut inner = self.inner.lock().unwrap();
            let slot = inner.cells.keys().next_back().map_or(0, |k| k + 1);
            let state = CellState {
                label: label.to_string(),
                id: id.to_string(),
                launched: Instant::now(),
                started: Instant::now(),
                step: 0,
                total_steps: 0,
                loss: f64::NAN,
                tokens_per_s: 0.0,
                first_step: None,
                requests: None,
            };
            inner.cells.insert(slot, state);
            slot
        };
        let bar = self.multi.insert_from_back(1, ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} steps {msg} ({elapsed}<{eta})")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        if self.mode == ProgressMode::Lines {
            let inner = self.inner.lock().unwrap();
            lines_out(&format!("[{}/{}] start {label} ({id})", inner.ended + inner.cells.len(), inner.total));
        }
        CellProgress { round: self.clone(), slot, bar }
    }

    /// A cell process ended: `what` is `done`, `failed`, `stopped`, … and `detail` a short reason.
    pub fn cell_ended(&self, cell: &CellProgress, what: &str, detail: &str, counts_done: bool) {
        cell.bar.finish_and_clear();
        self.multi.remove(&cell.bar);
        let mut inner = self.inner.lock().unwrap();
        let state = inner.cells.remove(&cell.slot);
        inner.ended += 1;
        if what == "failed" {
            inner.failed += 1;
        }
        if counts_done {
            self.overall.inc(1);
        }
        if inner.failed > 0 {
            self.overall.set_message(format!("{} failed", inner.failed));
        }
        let Some(state) = state else { return };
        if self.mode == ProgressMode::Lines {
            let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
            let took = human_duration(state.launched.elapsed());
            lines_out(&format!("[{}/{}] {what} {} after {took}{detail}", inner.ended, inner.total, state.label));
        } else if what == "failed" {
            // Shown even with --quiet.
            self.multi.suspend(|| lines_out(&format!("cell {} ({}) failed: {detail}", state.label, state.id)));
        }
    }

    /// Called often by the executor loop: in lines mode, prints the status lines when the
    /// interval has passed.
    pub fn tick(&self) {
        if self.mode != ProgressMode::Lines {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        if inner.last_status.elapsed() < inner.interval {
            return;
        }
        inner.last_status = Instant::now();
        let mut out = vec![format!(
            "status: {}/{} cell(s) ended{}, {} running, {} elapsed",
            inner.ended,
            inner.total,
            if inner.failed > 0 { format!(" ({} failed)", inner.failed) } else { String::new() },
            inner.cells.len(),
            human_duration(inner.started.elapsed())
        )];
        for s in inner.cells.values() {
            out.push(format!("  {}", s.status_line()));
        }
        lines_out(&out.join("\n"));
    }

    /// Ends the round's display.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

impl CellState {
    fn status_line(&self) -> String {
        if let Some((done, total)) = self.requests {
            return format!("{}: requests {done}/{total}", self.label);
        }
        if self.total_steps == 0 {
            return format!("{}: starting ({})", self.label, human_duration(self.launched.elapsed()));
        }
        let first = self.first_step.unwrap_or(0);
        let done_here = self.step.saturating_sub(first);
        let left = self.total_steps.saturating_sub(self.step);
        let eta = if done_here > 0 {
            let per_step = self.started.elapsed().as_secs_f64() / done_here as f64;
            human_duration(Duration::from_secs_f64(per_step * left as f64))
        } else {
            "?".into()
        };
        format!(
            "{}: step {}/{} ({:.0}%), loss {:.4}, {:.0} tokens/s, ETA {eta}",
            self.label,
            self.step,
            self.total_steps,
            100.0 * self.step as f64 / self.total_steps as f64,
            self.loss,
            self.tokens_per_s
        )
    }
}

impl CellProgress {
    /// A training step was reported.
    pub fn step(&self, step: u64, total_steps: u64, loss: f64, tokens_per_s: f64) {
        self.bar.set_length(total_steps.max(1));
        self.bar.set_position(step);
        self.bar.set_message(format!("loss {loss:.3} {tokens_per_s:.0} tok/s"));
        let mut inner = self.round.inner.lock().unwrap();
        if let Some(s) = inner.cells.get_mut(&self.slot) {
            if s.first_step.is_none() {
                // The step before the first one reported here: where this process resumed.
                s.first_step = Some(step.saturating_sub(1));
                s.started = Instant::now();
            }
            (s.step, s.total_steps, s.loss, s.tokens_per_s) = (step, total_steps, loss, tokens_per_s);
        }
    }

    /// A generation cell answered `done` of `total` requests.
    pub fn requests(&self, done: u64, total: u64) {
        self.bar.set_length(total.max(1));
        self.bar.set_position(done);
        self.bar.set_message("requests".to_string());
        if let Some(s) = self.round.inner.lock().unwrap().cells.get_mut(&self.slot) {
            s.requests = Some((done, total));
        }
    }

    /// An evaluation: one line in both modes.
    pub fn eval(&self, step: u64, epoch: f64, val_loss: f64) {
        let label = self.round.inner.lock().unwrap().cells.get(&self.slot).map(|s| s.label.clone()).unwrap_or_default();
        let line = format!("  {label}: step {step} epoch {epoch:.2} val_loss {val_loss:.4}");
        match self.round.mode {
            ProgressMode::Bars => {
                let _ = self.round.multi.println(line);
            }
            ProgressMode::Lines => lines_out(&line),
            ProgressMode::Off => {}
        }
    }

    /// Any other line the cell process printed on its progress pipe.
    pub fn println(&self, line: &str) {
        self.round.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_eta_counts_only_the_steps_trained_here() {
        let mut s = CellState {
            label: "a".into(),
            id: "0".into(),
            launched: Instant::now() - Duration::from_secs(11),
            started: Instant::now() - Duration::from_secs(10),
            step: 60,
            total_steps: 100,
            loss: 5.0,
            tokens_per_s: 1000.0,
            first_step: Some(50),
            requests: None,
        };
        // 10 steps in 10 s, 40 left: 40 s.
        let line = s.status_line();
        assert!(line.contains("step 60/100 (60%)") && line.contains("ETA 40s"), "{line}");
        s.total_steps = 0;
        assert!(s.status_line().contains("starting"));
    }
}
