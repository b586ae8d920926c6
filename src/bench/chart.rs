//! An SVG chart of a report: latencies side by side, the hot-customer
//! rates, and the latencies of the mixed load on one customer. Plain SVG
//! text, so it needs no plotting library and renders in any browser or on
//! GitHub.

use std::fmt::Write;

use super::report::Report;

const WIDTH: f64 = 900.0;
const LABEL: f64 = 300.0;
const ROW: f64 = 22.0;

/// One horizontal bar chart: rows of (label, value, note) under a title.
struct Panel {
    title: String,
    rows: Vec<(String, f64, String)>,
    /// Fill of each row, cycling.
    colors: &'static [&'static str],
}

impl Panel {
    fn height(&self) -> f64 {
        40.0 + ROW * self.rows.len() as f64
    }

    fn draw(&self, svg: &mut String, top: f64) {
        let max = self.rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE);
        // Room on the right for the longest note.
        let scale = (WIDTH - LABEL - 290.0) / max;
        let _ = writeln!(svg, r#"<text x="10" y="{}" font-weight="bold">{}</text>"#, top + 20.0, escape(&self.title));
        for (i, (label, value, note)) in self.rows.iter().enumerate() {
            let y = top + 30.0 + ROW * i as f64;
            let color = self.colors[i % self.colors.len()];
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{LABEL}" y="{}" width="{:.1}" height="{}" fill="{color}"/><text x="{:.1}" y="{}">{}</text>"#,
                LABEL - 8.0,
                y + 14.0,
                escape(label),
                y + 3.0,
                (value * scale).max(1.0),
                ROW - 6.0,
                LABEL + (value * scale).max(1.0) + 6.0,
                y + 14.0,
                escape(note)
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The report as an SVG document.
pub fn render(report: &Report) -> String {
    let mut panels = Vec::new();
    for c in report.levels() {
        let ops: Vec<_> = report.api.iter().filter(|s| s.concurrency == c).collect();
        let rows = ops
            .iter()
            .flat_map(|s| {
                [
                    (format!("{} p50", s.name), s.p50_ms, format!("{:.2} ms", s.p50_ms)),
                    (format!("{} p99", s.name), s.p99_ms, format!("{:.2} ms", s.p99_ms)),
                ]
            })
            .collect();
        let title = format!("Latency per call, {c} in flight (ms; shorter is better)");
        panels.push(Panel { title, rows, colors: &["#1f77b4", "#aec7e8"] });
        let rows = ops.iter().map(|s| (s.name.clone(), s.per_second, format!("{:.0}/s", s.per_second))).collect();
        let title = format!("Throughput, {c} in flight (calls per second; longer is better)");
        panels.push(Panel { title, rows, colors: &["#2ca02c", "#98df8a"] });
    }
    if let Some(hot) = &report.hot {
        let rows = hot
            .backlogs
            .iter()
            .map(|b| {
                let note =
                    format!("{:.0}/s, {:.2} history events per accrual", b.applied_per_second, b.events_per_accrual);
                (format!("{:?} ({} queued)", b.processing, b.accruals), b.applied_per_second, note)
            })
            .collect();
        let title = "Hot customer: backlog applied per second (longer is better)".to_owned();
        panels.push(Panel { title, rows, colors: &["#d62728", "#ff9896", "#ffbb78"] });
    }
    if let Some(mixed) = &report.mixed {
        let rows = mixed
            .calls
            .iter()
            .flat_map(|c| {
                [
                    (format!("{:?} p50", c.kind), c.p50_ms, format!("{:.2} ms, {:.0}/s", c.p50_ms, c.per_second)),
                    (format!("{:?} p99", c.kind), c.p99_ms, format!("{:.2} ms", c.p99_ms)),
                ]
            })
            .collect();
        let title = "Mixed load on one customer: Accrue, Redeem, Adjust at once (ms; shorter is better)".to_owned();
        panels.push(Panel { title, rows, colors: &["#9467bd", "#c5b0d5"] });
    }
    let height: f64 = panels.iter().map(Panel::height).sum::<f64>() + 40.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">loyalty bench: {} CPUs, Temporal dev server {}</text>
"#,
        report.machine.cpus,
        escape(&report.machine.dev_server_storage)
    );
    let mut top = 30.0;
    for panel in &panels {
        panel.draw(&mut svg, top);
        top += panel.height();
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Samples;

    #[test]
    fn one_latency_and_one_throughput_panel_per_level_with_escaped_labels() {
        let mut report = Report::new("in-memory <test>", 16);
        for c in [1, 16] {
            let mut s = Samples::default();
            s.ok(std::time::Duration::from_millis(3));
            s.set_wall(std::time::Duration::from_secs(1));
            report.api.push(s.summary("service Accrue", c));
        }
        let svg = render(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("in-memory &lt;test&gt;") && !svg.contains("<test>"));
        assert_eq!(svg.matches("Latency per call").count(), 2);
        assert_eq!(svg.matches("Throughput, ").count(), 2);
        assert_eq!(svg.matches("service Accrue p50").count(), 2);
    }
}
