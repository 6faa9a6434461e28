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

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the
/// host, so a stamp taken in one process can be compared in another.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs this benchmark binary again as a child process with `var=role` (the
/// runner's child entry point reads it) and the extra environment `env`;
/// its stdout goes nowhere.
pub fn spawn_role(var: &str, role: &str, env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = std::process::Command::new(exe);
    cmd.env(var, role).stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
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

pub mod svg {
    //! A small line chart written as SVG text: enough for the benchmark
    //! plots (throughput against message size, latency percentiles), with no
    //! font or image dependency.

    use std::fmt::Write as _;

    const W: f64 = 960.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 380.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 60.0;
    const COLORS: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];

    /// A chart: named series of (x, y) points.
    #[derive(Debug)]
    pub struct Chart<'a> {
        /// Title above the plot.
        pub title: &'a str,
        /// Label of the x axis.
        pub x_label: &'a str,
        /// Label of the y axis.
        pub y_label: &'a str,
        /// Logarithmic x axis (base 10).
        pub x_log: bool,
        /// Logarithmic y axis (base 10).
        pub y_log: bool,
        /// The series, each drawn as a line with markers, named in the legend.
        pub series: &'a [(String, Vec<(f64, f64)>)],
    }

    struct Axis {
        log: bool,
        lo: f64,
        hi: f64,
        /// Tick spacing of a linear axis.
        step: f64,
    }

    impl Axis {
        fn new(log: bool, values: impl Iterator<Item = f64>) -> Self {
            let f = |v: f64| if log { v.max(1e-12).log10() } else { v };
            let (mut lo, mut hi) = values
                .filter(|v| v.is_finite() && (!log || *v > 0.0))
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                });
            if !lo.is_finite() {
                (lo, hi) = (0.0, 1.0);
            }
            let mut step = 1.0;
            if log {
                (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
            } else {
                lo = lo.min(0.0);
                if hi <= lo {
                    hi = lo + 1.0;
                }
                // About five ticks at 1, 2, 2.5 or 5 times a power of ten.
                let raw = (hi - lo) / 5.0;
                let mag = 10f64.powf(raw.log10().floor());
                step = [1.0, 2.0, 2.5, 5.0, 10.0]
                    .into_iter()
                    .map(|m| m * mag)
                    .find(|&s| s >= raw)
                    .unwrap_or(10.0 * mag);
                hi = (hi / step).ceil() * step;
            }
            Axis { log, lo, hi, step }
        }

        /// Position of `v` in 0..=1.
        fn frac(&self, v: f64) -> f64 {
            let v = if self.log { v.max(1e-12).log10() } else { v };
            (v - self.lo) / (self.hi - self.lo)
        }

        fn ticks(&self) -> Vec<f64> {
            if self.log {
                (self.lo as i32..=self.hi as i32)
                    .map(|e| 10f64.powi(e))
                    .collect()
            } else {
                let n = ((self.hi - self.lo) / self.step).round() as usize;
                (0..=n).map(|i| self.lo + self.step * i as f64).collect()
            }
        }
    }

    fn label(v: f64) -> String {
        let a = v.abs();
        if a >= 1e9 {
            format!("{}G", v / 1e9)
        } else if a >= 1e6 {
            format!("{}M", v / 1e6)
        } else if a >= 1e3 && v.fract() == 0.0 && (v / 1e3).fract() == 0.0 {
            format!("{}k", v / 1e3)
        } else if a >= 10.0 || v == 0.0 || v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    }

    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    impl Chart<'_> {
        /// The SVG document.
        pub fn render(&self) -> String {
            let pts = || self.series.iter().flat_map(|(_, p)| p.iter());
            let xa = Axis::new(self.x_log, pts().map(|p| p.0));
            let ya = Axis::new(self.y_log, pts().map(|p| p.1));
            let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
            let x = |v: f64| LEFT + xa.frac(v) * pw;
            let y = |v: f64| TOP + (1.0 - ya.frac(v)) * ph;
            let mut s = String::new();
            let _ = writeln!(
                s,
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
            );
            let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
                LEFT + pw / 2.0,
                esc(self.title)
            );
            for t in xa.ticks() {
                let px = x(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    TOP + ph,
                    TOP + ph + 16.0,
                    label(t)
                );
            }
            for t in ya.ticks() {
                let py = y(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                    LEFT + pw,
                    LEFT - 6.0,
                    py + 4.0,
                    label(t)
                );
            }
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + pw / 2.0,
                H - 18.0,
                esc(self.x_label)
            );
            let _ = writeln!(
                s,
                r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
                TOP + ph / 2.0,
                TOP + ph / 2.0,
                esc(self.y_label)
            );
            for (i, (name, points)) in self.series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                let path: Vec<String> = points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                    path.join(" ")
                );
                if points.len() <= 20 {
                    for p in &path {
                        let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                        let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{c}"/>"#);
                    }
                }
                let ly = TOP + 10.0 + i as f64 * 20.0;
                let lx = LEFT + pw + 15.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                    lx + 20.0,
                    lx + 26.0,
                    ly + 4.0,
                    esc(name)
                );
            }
            s.push_str("</svg>\n");
            s
        }
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

    #[test]
    fn charts_are_svg_with_every_series() {
        let series = vec![
            ("a<b".to_string(), vec![(64.0, 0.5), (4096.0, 5.0)]),
            ("c".to_string(), vec![(64.0, 0.1), (1048576.0, 12.0)]),
        ];
        let svg = svg::Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            x_log: true,
            y_log: false,
            series: &series,
        }
        .render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
    }
}
