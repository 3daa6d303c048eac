//! The demo's report: `incident.png` (one panel per payments series: the
//! observed value, the detector's expected value inside its band, the
//! points it called anomalous, and vertical lines at the injection, the
//! alert and the heal), `report.html` (the picture, the alert as
//! Alertmanager got it, the webhook, the timings) and `alert.json`.
//!
//! Only the last minutes around the incident are drawn: the backfilled
//! history is flat and would squeeze the incident into a few pixels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::receivers::Alert;
use crate::backtest::plot::{FONT, register_font};

const WIDTH: u32 = 1400;
const PANEL_HEIGHT: u32 = 300;
/// Data seconds drawn before the injection.
const BEFORE: i64 = 60;

const OBSERVED: RGBColor = RGBColor(31, 119, 180);
const EXPECTED: RGBColor = RGBColor(230, 126, 34);
const ANOMALY: RGBColor = RGBColor(214, 39, 40);
const HEALED: RGBColor = RGBColor(44, 160, 44);

/// One scored point from `/api/v1/series`.
#[derive(Clone, Debug, Default)]
pub struct Point {
    pub ts: i64,
    pub value: f64,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub anomalous: bool,
}

/// A series as the detector's API shows it.
#[derive(Clone, Debug, Default)]
pub struct SeriesView {
    pub title: String,
    pub points: Vec<Point>,
}

impl SeriesView {
    pub fn from_api(title: &str, v: &serde_json::Value) -> SeriesView {
        let points = v["points"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some(Point {
                            ts: p["ts"].as_i64()?,
                            value: p["value"].as_f64()?,
                            expected: p["expected"].as_f64(),
                            lower: p["lower"].as_f64(),
                            upper: p["upper"].as_f64(),
                            anomalous: p["anomalous"].as_bool().unwrap_or(false),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        SeriesView {
            title: title.to_owned(),
            points,
        }
    }
}

/// Moments to mark, in data time (unix seconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct Marks {
    pub injected: Option<i64>,
    pub healed: Option<i64>,
    /// The newest data second when the alert arrived.
    pub alerted: Option<i64>,
}

pub struct Report<'a> {
    pub series: &'a [SeriesView],
    pub marks: Marks,
    pub alert: Option<&'a Alert>,
    pub webhook: Option<&'a serde_json::Value>,
    pub summary: &'a [String],
    pub success: bool,
}

impl Report<'_> {
    /// Writes the files into `dir`; their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let png = dir.join("incident.png");
        let mut files = Vec::new();
        if !self.series.is_empty() {
            self.draw(&png)
                .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
            files.push(png.clone());
        }
        let html = dir.join("report.html");
        std::fs::write(&html, self.html(&png)).with_context(|| html.display().to_string())?;
        files.push(html);
        if let Some(a) = self.alert {
            let path = dir.join("alert.json");
            let json = serde_json::json!({
                "labels": a.labels, "annotations": a.annotations,
                "startsAt": a.starts_at, "generatorURL": a.generator_url,
            });
            std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
            files.push(path);
        }
        Ok(files)
    }

    fn window(&self) -> (i64, i64) {
        let newest = self
            .series
            .iter()
            .filter_map(|s| s.points.last().map(|p| p.ts))
            .max()
            .unwrap_or(0);
        let from = self
            .marks
            .injected
            .map_or(newest - 3 * BEFORE, |i| i - BEFORE);
        (from, newest.max(from + 1))
    }

    fn draw(&self, path: &Path) -> Result<(), String> {
        register_font().map_err(|e| e.to_string())?;
        let height = PANEL_HEIGHT * self.series.len() as u32;
        let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (from, to) = self.window();
        for (area, s) in root
            .split_evenly((self.series.len(), 1))
            .iter()
            .zip(self.series)
        {
            self.panel(area, s, from, to).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())
    }

    fn panel(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        s: &SeriesView,
        from: i64,
        to: i64,
    ) -> Result<(), Box<dyn std::error::Error + '_>> {
        let pts: Vec<&Point> = s
            .points
            .iter()
            .filter(|p| (from..=to).contains(&p.ts))
            .collect();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in &pts {
            for v in [Some(p.value), p.lower, p.upper].into_iter().flatten() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.08).max(1e-9);
        let (lo, hi) = (lo.min(0.0).max(lo - pad), hi + pad);
        let rel = |ts: i64| (ts - from) as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(&s.title, (FONT, 18))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..rel(to), lo..hi)?;
        let inj = self.marks.injected;
        let x_fmt = |x: &f64| match inj {
            Some(i) => format!("{:+}s", (*x as i64 + from) - i),
            None => format!("{x:.0}s"),
        };
        chart
            .configure_mesh()
            .x_labels(12)
            .x_label_formatter(&x_fmt)
            .x_desc("data seconds relative to the injection")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;

        let banded: Vec<(f64, f64, f64)> = pts
            .iter()
            .filter_map(|p| Some((rel(p.ts), p.lower?, p.upper?)))
            .collect();
        if !banded.is_empty() {
            let mut poly: Vec<(f64, f64)> =
                banded.iter().map(|&(x, _, u)| (x, u.min(hi))).collect();
            poly.extend(banded.iter().rev().map(|&(x, l, _)| (x, l.max(lo))));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    EXPECTED.mix(0.18).filled(),
                )))?
                .label("expected band")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], EXPECTED.mix(0.3).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().filter_map(|p| Some((rel(p.ts), p.expected?))),
                EXPECTED.stroke_width(2),
            ))?
            .label("expected")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], EXPECTED.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (rel(p.ts), p.value)),
                OBSERVED.stroke_width(2),
            ))?
            .label("observed")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], OBSERVED.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.anomalous)
                    .map(|p| Circle::new((rel(p.ts), p.value), 4, ANOMALY.filled())),
            )?
            .label("anomalous (held until 30 normal points)")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, ANOMALY.filled()));
        let vline = |ts: i64, color: RGBColor| {
            PathElement::new([(rel(ts), lo), (rel(ts), hi)], color.stroke_width(2))
        };
        if let Some(i) = self.marks.injected {
            chart
                .draw_series(std::iter::once(vline(i, ANOMALY)))?
                .label("incident injected")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], ANOMALY.stroke_width(2)));
        }
        if let Some(a) = self.marks.alerted {
            chart
                .draw_series(std::iter::once(vline(a, BLACK)))?
                .label("alert received")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        }
        if let Some(h) = self.marks.healed {
            chart
                .draw_series(std::iter::once(vline(h, HEALED)))?
                .label("healed by the webhook's restart")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], HEALED.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        Ok(())
    }

    fn html(&self, png: &Path) -> String {
        use base64::Engine;
        let img = std::fs::read(png)
            .map(|b| {
                format!(
                    "<img alt=\"incident series\" style=\"max-width:100%\" src=\"data:image/png;base64,{}\">",
                    base64::engine::general_purpose::STANDARD.encode(b)
                )
            })
            .unwrap_or_default();
        let table = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("<tr><th>{}</th><td><pre>{}</pre></td></tr>", esc(k), esc(v)))
                .collect::<String>()
        };
        let alert = self.alert.map_or_else(
            || "<p>No alert was received.</p>".to_owned(),
            |a| {
                format!(
                    "<h3>Labels</h3><table>{}</table><h3>Annotations</h3><table>{}</table>",
                    table(&a.labels),
                    table(&a.annotations)
                )
            },
        );
        let webhook = self.webhook.map_or_else(
            || "<p>No webhook was received.</p>".to_owned(),
            |w| {
                format!(
                    "<pre>{}</pre>",
                    esc(&serde_json::to_string_pretty(w).unwrap_or_default())
                )
            },
        );
        let summary: String = self
            .summary
            .iter()
            .map(|l| format!("<li>{}</li>", esc(l)))
            .collect();
        let verdict = if self.success {
            "✔ detected, paged, healed and resolved"
        } else {
            "✘ the incident was not detected, healed and resolved"
        };
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Argus demo report</title>\
<style>body{{font-family:sans-serif;max-width:1450px;margin:auto}}th{{text-align:left;vertical-align:top;padding-right:1em}}pre{{margin:0;white-space:pre-wrap}}</style></head><body>\
<h1>Argus demo: payments incident</h1><p><b>{verdict}</b></p><ul>{summary}</ul>{img}\
<h2>The alert (as Alertmanager received it)</h2>{alert}<h2>The self-healing webhook (signature verified)</h2>{webhook}</body></html>"
        )
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: i64, spike_at: i64) -> SeriesView {
        SeriesView {
            title: "latency".into(),
            points: (0..n)
                .map(|i| Point {
                    ts: 1000 + i,
                    value: if i >= spike_at { 10.0 } else { 1.0 },
                    expected: Some(1.0),
                    lower: Some(0.5),
                    upper: Some(1.5),
                    anomalous: i >= spike_at,
                })
                .collect(),
        }
    }

    #[test]
    fn writes_a_picture_an_html_page_and_the_alert() {
        let dir = tempfile::tempdir().unwrap();
        let s = [series(200, 150), series(200, 150)];
        let mut alert = Alert {
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            starts_at: Some("2026-01-01T00:00:00Z".into()),
            ends_at: None,
            generator_url: None,
        };
        alert.labels.insert("service".into(), "payments".into());
        alert.annotations.insert(
            "log_templates".into(),
            "fraud-check timeout after <*> ms".into(),
        );
        let r = Report {
            series: &s,
            marks: Marks {
                injected: Some(1150),
                healed: Some(1180),
                alerted: Some(1157),
            },
            alert: Some(&alert),
            webhook: None,
            summary: &["detection: 1 s".to_owned()],
            success: true,
        };
        let files = r.write(dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        let png = std::fs::read(dir.path().join("incident.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("data:image/png;base64,"));
        assert!(
            html.contains("fraud-check timeout after &lt;*&gt; ms"),
            "escaped"
        );
        assert!(html.contains("No webhook was received"));
    }
}
