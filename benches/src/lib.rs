//! Helpers shared by the benchmark runners of shmring: describing the machine,
//! medians and percentiles, and writing result tables.
//!
//! The runners themselves are bench targets (`cargo bench -p shmring-benches
//! --bench compare|wake_latency|ring`) so that the peers they measure stay
//! dev-dependencies.
#![deny(missing_docs)]

use std::fmt::Write as _;
use std::path::PathBuf;

/// One line naming the machine: CPU model, logical CPUs, kernel, date (UTC).
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{cpu}, {cpus} logical CPUs, Linux {kernel}, {}",
        utc_date(secs)
    )
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn utc_date(secs: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Median of a non-empty list (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile (0..=100) of a sorted list, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Items per second in millions, formatted.
pub fn mps(items_per_sec: f64) -> String {
    format!("{:.1} M/s", items_per_sec / 1e6)
}

/// A markdown table under construction.
#[derive(Debug, Default)]
pub struct Table {
    text: String,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        let mut t = Table::default();
        let _ = writeln!(t.text, "| {} |", headers.join(" | "));
        let _ = writeln!(
            t.text,
            "|{}",
            headers.iter().map(|_| "---|").collect::<String>()
        );
        t
    }

    /// Appends a row.
    pub fn row(&mut self, cells: &[String]) {
        let _ = writeln!(self.text, "| {} |", cells.join(" | "));
    }

    /// The markdown text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Where a runner writes its report: `$CARGO_TARGET_DIR/<name>` or
/// `target/<name>` at the workspace root.
pub fn report_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    dir.join(name)
}

/// Writes `text` to [`report_path`]`(name)` and says where.
pub fn write_report(name: &str, text: &str) {
    let path = report_path(name);
    match std::fs::write(&path, text) {
        Ok(()) => println!("(written to {})", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_percentiles() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_564_800), "2026-11-25");
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
