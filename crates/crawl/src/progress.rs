//! The progress bar on stderr (indicatif, with the `cli` feature; nothing without it).

#[cfg(feature = "cli")]
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Pages fetched against pages known, drawn when stderr is a terminal.
pub(crate) struct Progress {
    #[cfg(feature = "cli")]
    bar: ProgressBar,
}

#[cfg(feature = "cli")]
impl Progress {
    /// A bar when `show`; with a shared frontier the total is unknown here (a counter instead).
    pub(crate) fn new(show: bool, shared: bool) -> Progress {
        if !show {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let (length, template) = if shared {
            (
                None,
                "{spinner} {elapsed_precise} {pos} pages fetched here, {rate} {msg}",
            )
        } else {
            (
                Some(0),
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} pages, {rate} {msg}",
            )
        };
        let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} pages/s", state.per_sec());
                    },
                )
                .progress_chars("=> "),
        );
        Progress { bar }
    }

    pub(crate) fn queued(&self, n: u64) {
        if n > 0 && !self.bar.is_hidden() {
            self.bar.inc_length(n);
        }
    }

    pub(crate) fn dropped(&self) {
        if !self.bar.is_hidden() {
            self.bar.dec_length(1);
        }
    }

    pub(crate) fn fetched(&self, errors: u64) {
        if !self.bar.is_hidden() {
            self.bar.inc(1);
            if errors > 0 && self.bar.position().is_multiple_of(64) {
                self.bar.set_message(format!("{errors} errors"));
            }
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(not(feature = "cli"))]
impl Progress {
    pub(crate) fn new(_show: bool, _shared: bool) -> Progress {
        Progress {}
    }

    pub(crate) fn queued(&self, _n: u64) {}

    pub(crate) fn dropped(&self) {}

    pub(crate) fn fetched(&self, _errors: u64) {}

    pub(crate) fn finish(&self) {}
}
