//! Figures and what is printed of them: one value per rep, then min,
//! median and max, the ratio of the median to the baseline's median, and a
//! verdict where a target applies. The table for people, JSON for scripts,
//! and the progress line on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

use realtime_by_hand::json::Json;

/// What a figure must reach. Timing and memory targets are judged on the
/// median of the reps; counts (events lost, connections held) on the worst
/// rep, since one rep that loses an event is a loss.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// median / baseline >= this.
    RatioAtLeast(f64),
    /// median / baseline <= this.
    RatioAtMost(f64),
    /// median <= this.
    AtMost(f64),
    /// every rep >= this.
    AtLeast(f64),
    /// every rep == 0.
    Zero,
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::RatioAtLeast(r) => format!(">= {r}x"),
            Target::RatioAtMost(r) => format!("<= {r}x"),
            Target::AtMost(v) => format!("<= {}", number(v)),
            Target::AtLeast(v) => format!(">= {}", number(v)),
            Target::Zero => "= 0".to_string(),
        }
    }

    fn met(self, figure: &Figure, ratio: Option<f64>) -> Option<bool> {
        let (min, median, max) = figure.summary()?;
        Some(match self {
            Target::RatioAtLeast(r) => ratio? >= r,
            Target::RatioAtMost(r) => ratio? <= r,
            Target::AtMost(v) => median <= v,
            Target::AtLeast(v) => min >= v,
            Target::Zero => max == 0.0,
        })
    }
}

/// What a figure is compared with.
#[derive(Debug, Clone)]
pub enum Base {
    None,
    /// Another figure of this run, by key.
    Figure(String),
    /// A fixed amount (the payload size, for bytes on the wire).
    Constant(f64),
}

/// A figure's identity: the same for every rep.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Stable, for scripts: `sse-fanout/5000/p99`.
    pub key: String,
    pub group: String,
    pub label: String,
    pub unit: &'static str,
    pub base: Base,
    pub target: Option<Target>,
}

impl Spec {
    pub fn new(
        group: &str,
        key: impl Into<String>,
        label: impl Into<String>,
        unit: &'static str,
    ) -> Spec {
        Spec {
            key: key.into(),
            group: group.to_string(),
            label: label.into(),
            unit,
            base: Base::None,
            target: None,
        }
    }

    pub fn versus(mut self, key: impl Into<String>) -> Spec {
        self.base = Base::Figure(key.into());
        self
    }

    pub fn versus_constant(mut self, value: f64) -> Spec {
        self.base = Base::Constant(value);
        self
    }

    pub fn target(mut self, target: Option<Target>) -> Spec {
        self.target = target;
        self
    }
}

pub struct Figure {
    pub spec: Spec,
    pub values: Vec<f64>,
}

impl Figure {
    /// (min, median, max), or `None` before any value.
    pub fn summary(&self) -> Option<(f64, f64, f64)> {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Some((first, median, last))
    }
}

/// Everything one run measured, in the order it was measured.
#[derive(Default)]
pub struct Results {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Results {
    /// One rep's value of a figure.
    pub fn add(&mut self, spec: Spec, value: f64) {
        match self.figures.iter_mut().find(|f| f.spec.key == spec.key) {
            Some(figure) => figure.values.push(value),
            None => self.figures.push(Figure {
                spec,
                values: vec![value],
            }),
        }
    }

    /// A note under the table; the same text is kept once.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    fn median_of(&self, key: &str) -> Option<f64> {
        let figure = self.figures.iter().find(|f| f.spec.key == key)?;
        figure.summary().map(|(_, median, _)| median)
    }

    /// The baseline's value and the ratio of the median to it.
    fn compare(&self, figure: &Figure) -> (Option<f64>, Option<f64>) {
        let base = match &figure.spec.base {
            Base::None => None,
            Base::Figure(key) => self.median_of(key),
            Base::Constant(v) => Some(*v),
        };
        let median = figure.summary().map(|(_, m, _)| m);
        let ratio = match (median, base) {
            (Some(m), Some(b)) if b != 0.0 => Some(m / b),
            _ => None,
        };
        (base, ratio)
    }

    fn verdict(&self, figure: &Figure) -> Option<(String, bool)> {
        let target = figure.spec.target?;
        let (_, ratio) = self.compare(figure);
        target.met(figure, ratio).map(|ok| (target.text(), ok))
    }
}

/// A number as the table shows it: thousands separated, three figures
/// after the point for small values.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    let digits = if v.abs() >= 1000.0 || v.fract() == 0.0 {
        0
    } else if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let (sign, whole) = whole.strip_prefix('-').map_or(("", whole), |w| ("-", w));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        "" => format!("{sign}{grouped}"),
        f => format!("{sign}{grouped}.{f}"),
    }
}

fn pad(text: &str, width: usize, right: bool) -> String {
    let n = text.chars().count();
    let fill = " ".repeat(width.saturating_sub(n));
    if right {
        format!("{fill}{text}")
    } else {
        format!("{text}{fill}")
    }
}

/// The table: one line per figure, grouped, then the notes.
pub fn table(results: &Results, title: &str) -> String {
    let label_width = results
        .figures
        .iter()
        .map(|f| f.spec.label.chars().count() + 2)
        .max()
        .unwrap_or(20)
        .max(20);
    let mut out = format!("{title}\n\n");
    let heads = [
        "unit", "min", "median", "max", "baseline", "ratio", "target",
    ];
    out.push_str(&pad("figure", label_width, false));
    for (i, head) in heads.iter().enumerate() {
        out.push_str(&pad(head, [7, 11, 11, 11, 11, 7, 11][i], true));
    }
    out.push('\n');
    let mut group = "";
    for figure in &results.figures {
        if figure.spec.group != group {
            group = &figure.spec.group;
            out.push_str(&format!("{group}\n"));
        }
        out.push_str(&row(results, figure, label_width));
    }
    if !results.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &results.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    out
}

fn row(results: &Results, figure: &Figure, label_width: usize) -> String {
    let (min, median, max) = figure.summary().unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let (base, ratio) = results.compare(figure);
    let mut line = pad(&format!("  {}", figure.spec.label), label_width, false);
    line.push_str(&pad(figure.spec.unit, 7, true));
    for v in [min, median, max, base.unwrap_or(f64::NAN)] {
        line.push_str(&pad(&number(v), 11, true));
    }
    let ratio = ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
    line.push_str(&pad(&ratio, 7, true));
    if let Some((text, ok)) = results.verdict(figure) {
        line.push_str(&pad(&text, 11, true));
        line.push_str(if ok { "  pass" } else { "  MISS" });
    } else if let Some(target) = figure.spec.target {
        line.push_str(&pad(&target.text(), 11, true));
        line.push_str("  n/a");
    }
    line.push('\n');
    line
}

fn num(v: Option<f64>) -> Json {
    v.map_or(Json::Null, Json::Number)
}

fn text(s: &str) -> Json {
    Json::String(s.to_string())
}

/// The same as the table, for scripts.
pub fn json(results: &Results, header: Vec<(String, Json)>) -> String {
    let figures = results
        .figures
        .iter()
        .map(|figure| {
            let summary = figure.summary();
            let (base, ratio) = results.compare(figure);
            let verdict = results.verdict(figure);
            Json::Object(vec![
                ("key".into(), text(&figure.spec.key)),
                ("group".into(), text(&figure.spec.group)),
                ("label".into(), text(&figure.spec.label)),
                ("unit".into(), text(figure.spec.unit)),
                (
                    "values".into(),
                    Json::Array(figure.values.iter().map(|v| Json::Number(*v)).collect()),
                ),
                ("min".into(), num(summary.map(|s| s.0))),
                ("median".into(), num(summary.map(|s| s.1))),
                ("max".into(), num(summary.map(|s| s.2))),
                ("baseline".into(), num(base)),
                ("ratio".into(), num(ratio)),
                (
                    "target".into(),
                    figure.spec.target.map_or(Json::Null, |t| text(&t.text())),
                ),
                (
                    "pass".into(),
                    verdict.map_or(Json::Null, |(_, ok)| Json::Bool(ok)),
                ),
            ])
        })
        .collect();
    let mut members = header;
    members.push(("figures".into(), Json::Array(figures)));
    members.push((
        "notes".into(),
        Json::Array(results.notes.iter().map(|n| text(n)).collect()),
    ));
    format!("{}\n", Json::Object(members))
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per step otherwise (so a log file stays readable).
pub struct Progress {
    started: Instant,
    tty: bool,
    last: Mutex<String>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(String::new()),
        }
    }

    /// A new step; on a terminal it replaces the line.
    pub fn step(&self, text: &str) {
        let line = format!("[{:6.1} s] {text}", self.started.elapsed().as_secs_f64());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if self.tty {
            let blank = last.chars().count().saturating_sub(line.chars().count());
            let _ = write!(err, "\r{line}{}", " ".repeat(blank));
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        *last = line;
    }

    /// A change within a step (a count going up): shown on a terminal only.
    pub fn detail(&self, text: &str) {
        if self.tty {
            self.step(text);
        }
    }

    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Clears the line before the results are printed.
    pub fn done(&self) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if self.tty && !last.is_empty() {
            eprint!("\r{}\r", " ".repeat(last.chars().count()));
        }
    }
}

/// The p-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_percentiles() {
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(123.45), "123.5");
        assert_eq!(number(0.5), "0.500");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(-2500.0), "-2,500");
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn ratios_and_verdicts() {
        let mut r = Results::default();
        r.add(Spec::new("b", "b/x", "x", "rt/s"), 100.0);
        let spec = Spec::new("w", "w/x", "x", "msg/s")
            .versus("b/x")
            .target(Some(Target::RatioAtLeast(0.9)));
        for v in [80.0, 95.0, 91.0] {
            r.add(spec.clone(), v);
        }
        let w = &r.figures[1];
        assert_eq!(w.summary(), Some((80.0, 91.0, 95.0)));
        assert_eq!(r.verdict(w).map(|v| v.1), Some(true));
        assert!(table(&r, "t").contains("pass"));
    }
}
