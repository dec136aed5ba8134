//! The one table: rows of (figure, value, bar, pass/fail), printed and
//! written as JSON.

use std::path::Path;

use serde::Serialize;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub figure: String,
    /// As shown, with its unit.
    pub value: String,
    /// The SPEC §5 bar, or `—` for a figure without one.
    pub bar: String,
    /// `Some(true)` pass, `Some(false)` fail, `None` no bar or not measured.
    pub pass: Option<bool>,
    /// The measured number in `unit`, for scripts.
    pub number: Option<f64>,
    pub unit: String,
    /// How it was measured, or why it was not.
    pub note: String,
    /// Where the row sits in the table (rows are measured out of order).
    #[serde(skip)]
    pub section: u8,
}

impl Row {
    pub fn new(figure: &str, number: f64, unit: &str, shown: String) -> Self {
        Row {
            figure: figure.into(),
            value: shown,
            bar: "—".into(),
            pass: None,
            number: Some(number),
            unit: unit.into(),
            note: String::new(),
            section: 0,
        }
    }

    /// A figure that could not be measured, with the reason as its value.
    pub fn missing(figure: &str, bar: &str, why: &str) -> Self {
        Row {
            figure: figure.into(),
            value: "not measured".into(),
            bar: bar.into(),
            pass: None,
            number: None,
            unit: String::new(),
            note: why.into(),
            section: 0,
        }
    }

    pub fn bar(mut self, bar: &str, pass: bool) -> Self {
        self.bar = bar.into();
        self.pass = Some(pass);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    section: u8,
}

impl Table {
    /// Rows pushed from now on belong to section `n` (1 decide, 2 gate,
    /// 3 fan-out, 4 chat, 5 idle, 6 churn, 7 hermes, 8 TLS, 9 upstream).
    pub fn section(&mut self, n: u8) {
        self.section = n;
    }

    pub fn push(&mut self, mut row: Row) {
        row.section = self.section;
        println!(
            "  -> {}: {} ({})",
            row.figure,
            row.value,
            verdict(row.pass, &row.value)
        );
        self.rows.push(row);
    }

    fn sorted(&self) -> Vec<&Row> {
        let mut v: Vec<&Row> = self.rows.iter().collect();
        v.sort_by_key(|r| r.section);
        v
    }

    pub fn print(&self) {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.figure.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.value.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let w2 = self
            .rows
            .iter()
            .map(|r| r.bar.chars().count())
            .max()
            .unwrap_or(3)
            .max(3);
        println!();
        println!(
            "| {:w0$} | {:w1$} | {:w2$} | result |",
            "figure", "value", "bar"
        );
        println!(
            "|{}|{}|{}|--------|",
            "-".repeat(w0 + 2),
            "-".repeat(w1 + 2),
            "-".repeat(w2 + 2)
        );
        for r in self.sorted() {
            println!(
                "| {} | {} | {} | {:6} |",
                pad(&r.figure, w0),
                pad(&r.value, w1),
                pad(&r.bar, w2),
                verdict(r.pass, &r.value)
            );
        }
        let notes: Vec<_> = self
            .sorted()
            .into_iter()
            .filter(|r| !r.note.is_empty())
            .collect();
        if !notes.is_empty() {
            println!();
            for r in notes {
                println!("* {}: {}", r.figure, r.note);
            }
        }
    }

    /// # Errors
    /// The file cannot be written.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let doc = serde_json::json!({
            "date": now_utc(),
            "machine": machine(),
            "command": "make bench",
            "rows": self.sorted(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap() + "\n")
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

fn verdict(pass: Option<bool>, value: &str) -> &'static str {
    match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None if value == "not measured" => "n/a",
        None => "info",
    }
}

fn now_utc() -> String {
    dashgate::util::now_rfc3339()
}

/// `nproc`, memory and CPU model, for the record.
pub fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // Others' work on the machine while this ran (the 1-minute figure).
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    serde_json::json!({
        "nproc": cpus,
        "cpu": model,
        "loadavg_1m_at_end": load,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
    })
}

/// The median of a criterion benchmark, in nanoseconds.
fn criterion_median_ns(group: &str, id: &str) -> Option<f64> {
    let path = super::bench_dir()
        .parent()?
        .join("criterion")
        // `bench_function("decide/20_rules")` is stored as `decide_20_rules`.
        .join(format!("{group}_{id}"))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Rows for `benches/decide.rs` (criterion runs first in `make bench`).
pub fn decide_rows(t: &mut Table) {
    let cases = [
        (
            "decide",
            "20_rules",
            "decide, 20 rules (median)",
            Some(1000.0),
        ),
        (
            "decide",
            "10k_cidrs",
            "decide, 10,000 CIDRs (median)",
            Some(2000.0),
        ),
        (
            "explain",
            "worst_case",
            "explain, worst case (median)",
            None,
        ),
    ];
    for (group, id, figure, bar_ns) in cases {
        match criterion_median_ns(group, id) {
            Some(ns) => {
                let shown = if ns >= 1000.0 {
                    format!("{:.2} µs", ns / 1000.0)
                } else {
                    format!("{ns:.0} ns")
                };
                let row = Row::new(figure, ns, "ns", shown)
                    .note(format!("criterion, benches/decide.rs {group}/{id}"));
                t.push(match bar_ns {
                    Some(b) => row.bar(&format!("≤ {} µs", b / 1000.0), ns <= b),
                    None => row,
                });
            }
            None => t.push(Row::missing(
                figure,
                &bar_ns.map_or("—".into(), |b| format!("≤ {} µs", b / 1000.0)),
                "no criterion estimate: run `cargo bench --bench decide` first (make bench does)",
            )),
        }
    }
}

/// Rows for `benches/chat.rs`, which `make bench` runs before this program
/// and which leaves its figures in `target/bench/chat.json`.
pub fn chat_rows(t: &mut Table) {
    let path = super::bench_dir().join("chat.json");
    let Some(v) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    else {
        let why = format!(
            "no {}: `cargo bench --bench chat` did not run or did not finish (make bench runs it first; see its output)",
            path.display()
        );
        t.push(Row::missing(
            "chat: PTY output to a WebSocket client",
            "≥ 50 MB/s",
            &why,
        ));
        t.push(Row::missing("chat: keystroke echo p99", "≤ 5 ms", &why));
        return;
    };
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let (zeros, text) = (f("zeros_mb_s"), f("text_mb_s"));
    let worst = zeros.min(text);
    t.push(
        Row::new(
            "chat: PTY output to a WebSocket client (zeros / text lines)",
            worst,
            "MB/s",
            format!("{zeros:.1} / {text:.1} MB/s"),
        )
        .bar("≥ 50 MB/s", worst >= 50.0)
        .note(format!(
            "benches/chat.rs: median of {} runs of {} MB each, read by a WebSocket client on loopback; the PTY read by the library alone gives {:.1} / {:.1} MB/s",
            v["runs"],
            f("bytes") / 1e6,
            f("pty_zeros_mb_s"),
            f("pty_text_mb_s")
        )),
    );
    let (p50, p99) = (f("echo_p50_ms"), f("echo_p99_ms"));
    t.push(
        Row::new(
            "chat: keystroke echo p50 / p99",
            p99,
            "ms",
            format!("{p50:.3} ms / {p99:.3} ms"),
        )
        .bar("p99 ≤ 5 ms", p99 <= 5.0)
        .note(format!(
            "benches/chat.rs: {} keys one at a time through `stty raw -echo; cat` in the PTY; max {:.3} ms",
            v["keys"],
            f("echo_max_ms")
        )),
    );
}
