//! Helpers shared by the benchmark binaries in `src/bin/`.

use std::io::{self, BufRead, BufReader};
use std::process::ChildStdout;

/// The median of `values` (the mean of the two middle values for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them ("?" if unreadable).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One trimmed line from a child's stdout; an error names `what` if the child exited first.
pub fn read_line(reader: &mut BufReader<ChildStdout>, what: &str) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::other(format!("{what} exited early")));
    }
    Ok(line.trim().to_string())
}
