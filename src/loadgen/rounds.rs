//! Reporting a bench's rounds: each run as it is measured, then each row's median over
//! the rounds with its spread. Ratios (daybook to the floor, to the naive design) are
//! taken within a round, where both sides ran on the same machine minutes apart, and
//! only then summarized: the machine's drift between rounds cancels in the ratio.

use std::io::Write;

use super::{Measurement, Row, micros};

/// The median of a set of measurements with its least and greatest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values. With an even count, the median is the mean of the middle two.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1] })
    }

    /// `median (least to greatest)`, each with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!("{:.*} ({:.*} to {:.*})", decimals, self.median, decimals, self.min, decimals, self.max)
    }
}

/// Prints one round's measurement of a row, and its ratios.
pub fn print_run(m: &Measurement, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "daybook {}", m.daybook.line())?;
    if let Some(naive) = &m.naive {
        writeln!(out, "naive   {}", naive.line())?;
        writeln!(
            out,
            "        Redis mode is {:.2}x the naive design's calls/s (one SET NX round trip per message){}",
            m.daybook.calls_per_s / naive.calls_per_s,
            cpu_ratio(&m.daybook, naive)
                .map(|r| format!("; server CPU per call {r:.2}x the naive design's"))
                .unwrap_or_default()
        )?;
    }
    if let Some(floor) = &m.floor {
        writeln!(out, "floor   {}", floor.line())?;
        writeln!(
            out,
            "        ratio {:.2} of the floor's calls/s; p99 {:+.1} us over it{}",
            m.daybook.calls_per_s / floor.calls_per_s,
            micros(m.daybook.p99) - micros(floor.p99),
            cpu_ratio(&m.daybook, floor)
                .map(|r| format!("; server CPU per call {r:.2}x the floor's"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

fn cpu_ratio(a: &Row, b: &Row) -> Option<f64> {
    let (a, b) = (micros(a.cpu_per_call?), micros(b.cpu_per_call?));
    (b > 0.0).then(|| a / b)
}

/// One side's figures over the rounds.
fn side(label: &str, rows: &[&Row], out: &mut impl Write) -> std::io::Result<()> {
    let calls = Spread::of(rows.iter().map(|r| r.calls_per_s)).expect("a round");
    let p99 = Spread::of(rows.iter().map(|r| micros(r.p99))).expect("a round");
    let mut line = format!("{label:<8}calls/s {}   p99 {} us", calls.show(0), p99.show(1));
    if let Some(cpu) = Spread::of(rows.iter().filter_map(|r| r.cpu_per_call).map(micros)) {
        line.push_str(&format!("   cpu {} us/call", cpu.show(1)));
    }
    if let Some(writes) = Spread::of(rows.iter().filter_map(|r| r.writes_per_call)) {
        line.push_str(&format!("   writes {}/call", writes.show(2)));
    }
    writeln!(out, "{line}")
}

/// A row's medians over its rounds, each with its spread (least to greatest).
pub fn print_summary(runs: &[Measurement], out: &mut impl Write) -> std::io::Result<()> {
    let Some(first) = runs.first() else { return Ok(()) };
    writeln!(out, "== {}: median of {} rounds (least to greatest)", first.daybook.name, runs.len())?;
    side("daybook", &runs.iter().map(|m| &m.daybook).collect::<Vec<_>>(), out)?;
    if let Some(share) = Spread::of(runs.iter().filter_map(|m| m.daybook.new_share)) {
        writeln!(
            out,
            "        first touches {:.1}% ({:.1} to {:.1})",
            share.median * 100.0,
            share.min * 100.0,
            share.max * 100.0
        )?;
    }
    let beside = |pick: fn(&Measurement) -> Option<&Row>| -> Vec<(&Row, &Row)> {
        runs.iter().filter_map(|m| Some((&m.daybook, pick(m)?))).collect()
    };
    let naive = beside(|m| m.naive.as_ref());
    if !naive.is_empty() {
        side("naive", &naive.iter().map(|(_, n)| *n).collect::<Vec<_>>(), out)?;
        let calls = Spread::of(naive.iter().map(|(d, n)| d.calls_per_s / n.calls_per_s)).expect("a round");
        let mut line = format!("        Redis mode {}x the naive design's calls/s", calls.show(2));
        if let Some(cpu) = Spread::of(naive.iter().filter_map(|(d, n)| cpu_ratio(d, n))) {
            line.push_str(&format!("; server CPU per call {}x", cpu.show(2)));
        }
        writeln!(out, "{line}")?;
    }
    let floor = beside(|m| m.floor.as_ref());
    if !floor.is_empty() {
        side("floor", &floor.iter().map(|(_, f)| *f).collect::<Vec<_>>(), out)?;
        let calls = Spread::of(floor.iter().map(|(d, f)| d.calls_per_s / f.calls_per_s)).expect("a round");
        let p99 = Spread::of(floor.iter().map(|(d, f)| micros(d.p99) - micros(f.p99))).expect("a round");
        let mut line =
            format!("        ratio {} of the floor's calls/s; p99 over it {} us", calls.show(2), p99.show(1));
        if let Some(cpu) = Spread::of(floor.iter().filter_map(|(d, f)| cpu_ratio(d, f))) {
            line.push_str(&format!("; server CPU per call {}x the floor's", cpu.show(2)));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(Spread::of([3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]), Some(Spread { median: 2.5, min: 1.0, max: 4.0 }));
        assert_eq!(Spread::of([7.0]), Some(Spread { median: 7.0, min: 7.0, max: 7.0 }));
        assert_eq!(Spread::of(Vec::<f64>::new()), None);
    }

    fn row(calls: f64, cpu_us: u64) -> Row {
        Row {
            name: "unary c=64".into(),
            calls_per_s: calls,
            events_per_s: calls,
            p50: std::time::Duration::from_micros(500),
            p99: std::time::Duration::from_micros(900),
            p999: std::time::Duration::from_micros(1500),
            cpu_per_call: Some(std::time::Duration::from_micros(cpu_us)),
            writes_per_call: Some(1.0),
            new_share: Some(0.1),
        }
    }

    #[test]
    fn the_summary_takes_each_ratio_within_its_round() {
        // Round one: 40k against 50k (0.80); round two: 30k against 60k (0.50); round
        // three: 45k against 50k (0.90). The median ratio is 0.80, not 40k / 50k.
        let runs: Vec<Measurement> = [(40e3, 50e3), (30e3, 60e3), (45e3, 50e3)]
            .into_iter()
            .map(|(d, f)| Measurement { daybook: row(d, 20), floor: Some(row(f, 10)), naive: None })
            .collect();
        let mut out = Vec::new();
        print_summary(&runs, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("median of 3 rounds"), "{text}");
        assert!(text.contains("ratio 0.80 (0.50 to 0.90) of the floor's calls/s"), "{text}");
        assert!(text.contains("server CPU per call 2.00 (2.00 to 2.00)x the floor's"), "{text}");
        assert!(text.contains("daybook calls/s 40000 (30000 to 45000)"), "{text}");
    }
}
