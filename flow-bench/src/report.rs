//! One row per measurement; printed as a table or as JSON.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub scenario: String,
    pub count: u64,
    /// What was counted per second ("runs/s", "steps/s", "tx/s").
    pub unit: String,
    pub throughput: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Throughput over the best baseline (single-row INSERT transactions).
    pub ratio: Option<f64>,
    pub note: String,
}

pub fn print_table(rows: &[Row]) {
    let header = [
        "scenario",
        "count",
        "throughput",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "cpu s",
        "rss MiB",
        "ratio",
        "note",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
            vec![
                r.scenario.clone(),
                if r.count == 0 {
                    "-".into()
                } else {
                    r.count.to_string()
                },
                r.throughput
                    .map_or("-".into(), |t| format!("{t:.0} {}", r.unit)),
                f(r.p50_ms, 2),
                f(r.p95_ms, 2),
                f(r.p99_ms, 2),
                f(r.cpu_seconds, 1),
                f(r.peak_rss_mib, 1),
                r.ratio.map_or("-".into(), |x| format!("{x:.2}x")),
                r.note.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: Vec<String>| {
        cols.iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(header.iter().map(|s| s.to_string()).collect()));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-")
    );
    for c in cells {
        println!("{}", line(c));
    }
}

/// p-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

pub fn with_latencies(mut row: Row, mut ms: Vec<f64>) -> Row {
    ms.sort_by(|a, b| a.total_cmp(b));
    row.p50_ms = percentile(&ms, 50.0);
    row.p95_ms = percentile(&ms, 95.0);
    row.p99_ms = percentile(&ms, 99.0);
    row
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
