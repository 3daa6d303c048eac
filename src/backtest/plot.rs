//! One PNG per backtested file: what the engine saw, expected and flagged.
//!
//! 1600×800, two panels sharing the x axis (row index, labelled with the
//! rows' timestamps, so repeated or unsorted timestamps cannot fold the
//! line):
//! - top: the series (blue), the engine's expected value (orange) inside its
//!   band (light orange; not drawn while the engine is learning), labelled
//!   windows shaded red, flagged rows as red dots;
//! - bottom: the anomaly score, the threshold as a dashed line, the windows
//!   again, the engine's learning period shaded grey and, in labelled runs,
//!   the end of NAB's probationary period (rows before it are not scored).
//!
//! "Flagged" is decided by the caller: in labelled runs score ≥ the standard
//! profile's threshold past the probationary period, in unlabelled runs the
//! engine's own `anomalous` decision.
//!
//! Text uses DejaVu Sans, bundled in the binary (`assets/fonts`) and
//! registered with plotters' `ab_glyph` backend, so plotting needs no system
//! font library. Long series stay cheap: the band is reduced to one min/max
//! pair per x bucket (at most two per pixel column) before it is filled.
//!
//! A plot is drawn to `<name>.tmp.png` and renamed into place.

use std::path::{Path, PathBuf};
use std::sync::Once;

use argus_detector::engine::Verdict;
use chrono::DateTime;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::input::TimeSeries;
use super::nab::{Window, probationary_period};

pub const WIDTH: u32 = 1600;
pub const HEIGHT: u32 = 800;
pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const SERIES: RGBColor = RGBColor(31, 119, 180);
const EXPECTED: RGBColor = RGBColor(230, 126, 34);
const FLAG: RGBColor = RGBColor(214, 39, 40);
const WINDOW: RGBColor = RGBColor(214, 39, 40);
const LEARNING: RGBColor = RGBColor(127, 127, 127);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: cannot draw: {reason}")]
    Draw { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundled font is not a valid font file")]
    Font,
}

/// What to draw for one file.
pub struct PlotInput<'a> {
    pub series: &'a TimeSeries,
    pub verdicts: &'a [Option<Verdict>],
    /// Empty for unlabelled runs.
    pub windows: &'a [Window],
    /// Rows to mark as flagged.
    pub flagged: &'a [bool],
    /// The threshold behind `flagged`, if any (labelled runs).
    pub threshold: Option<f64>,
}

/// `<out>/plots/<category>/<stem>.png`.
pub fn plot_path(out: &Path, category: &str, stem: &str) -> PathBuf {
    out.join("plots").join(category).join(format!("{stem}.png"))
}

pub(crate) fn register_font() -> Result<(), PlotError> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| {
        ok = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok();
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// Draws `input` to `path` (PNG).
pub fn plot(path: &Path, input: &PlotInput<'_>) -> Result<(), PlotError> {
    register_font()?;
    let io = |source| PlotError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp.png");
    let drawn = draw(&tmp, input).map_err(|reason| PlotError::Draw {
        path: path.to_owned(),
        reason,
    });
    match drawn {
        Ok(()) => std::fs::rename(&tmp, path).map_err(io),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Compact tick labels for values of any magnitude.
fn number(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Runs of consecutive rows for which `keep` holds.
fn runs(n: usize, keep: impl Fn(usize) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..=n {
        match (start, i < n && keep(i)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn draw(path: &Path, input: &PlotInput<'_>) -> Result<(), String> {
    let s = input.series;
    let n = s.len();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let flagged_count = input.flagged.iter().filter(|&&f| f).count();
    let title = match input.threshold {
        Some(t) => format!(
            "{}: {n} rows, labelled windows: {}, flagged: {flagged_count} (score ≥ {t:.4})",
            s.name,
            input.windows.len()
        ),
        None => format!(
            "{}: {n} rows, flagged by the engine: {flagged_count}",
            s.name
        ),
    };
    let root = root.titled(&title, (FONT, 22)).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically((HEIGHT as f64 * 0.6) as u32);
    draw_values(&top, input).map_err(|e| e.to_string())?;
    draw_scores(&bottom, input).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult<'a> =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>>;

fn x_range(n: usize) -> std::ops::Range<f64> {
    -0.5..(n.max(1) as f64 - 0.5)
}

fn x_label(s: &TimeSeries) -> impl Fn(&f64) -> String + '_ {
    move |x| {
        let i = (x.round().max(0.0) as usize).min(s.len().saturating_sub(1));
        s.unix_micros
            .get(i)
            .and_then(|&us| DateTime::from_timestamp_micros(us))
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    }
}

fn window_rects(
    windows: &[Window],
    y: (f64, f64),
) -> impl Iterator<Item = Rectangle<(f64, f64)>> + '_ {
    windows.iter().map(move |w| {
        Rectangle::new(
            [(w.start as f64 - 0.5, y.0), (w.end as f64 + 0.5, y.1)],
            WINDOW.mix(0.12).filled(),
        )
    })
}

fn draw_values<'a>(area: &Area<'a>, input: &PlotInput<'_>) -> DrawResult<'a> {
    let s = input.series;
    let n = s.len();
    let finite = s.values.iter().flatten().copied();
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo > hi {
        (-1.0, 1.0)
    } else if lo == hi {
        (lo - 1.0, hi + 1.0)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    };
    let clamp = |v: f64| v.clamp(lo, hi);

    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(60)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range(n), lo..hi)?;
    let label = x_label(s);
    let y_label = |v: &f64| number(*v);
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&label)
        .y_label_formatter(&y_label)
        .y_desc("value")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    if !input.windows.is_empty() {
        chart
            .draw_series(window_rects(input.windows, (lo, hi)))?
            .label("labelled window")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 6), (x + 18, y + 6)], WINDOW.mix(0.25).filled())
            });
    }

    // Band: per bucket the lowest lower and highest upper bound among rows
    // the engine gave a decision for; one polygon per run of such buckets.
    let seen = |i: usize| input.verdicts[i].is_some_and(|v| !v.learning);
    let per_bucket = n.div_ceil(2 * WIDTH as usize).max(1);
    let buckets: Vec<Option<(f64, f64, f64)>> = (0..n.div_ceil(per_bucket))
        .map(|b| {
            let rows = b * per_bucket..((b + 1) * per_bucket).min(n);
            let centre = (rows.start + rows.end - 1) as f64 / 2.0;
            rows.filter(|&i| seen(i))
                .filter_map(|i| input.verdicts[i])
                .filter(|v| v.lower.is_finite() && v.upper.is_finite())
                .fold(None, |acc: Option<(f64, f64, f64)>, v| {
                    let (l, u) = (clamp(v.lower), clamp(v.upper));
                    Some(acc.map_or((centre, l, u), |(c, al, au)| (c, al.min(l), au.max(u))))
                })
        })
        .collect();
    let band_runs = runs(buckets.len(), |b| buckets[b].is_some());
    chart
        .draw_series(band_runs.iter().map(|r| {
            let pts: Vec<(f64, f64)> = buckets[r.clone()]
                .iter()
                .flatten()
                .map(|&(x, _, u)| (x, u))
                .chain(
                    buckets[r.clone()]
                        .iter()
                        .rev()
                        .flatten()
                        .map(|&(x, l, _)| (x, l)),
                )
                .collect();
            Polygon::new(pts, EXPECTED.mix(0.18).filled())
        }))?
        .label("expected band")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], EXPECTED.mix(0.3).filled()));

    // The series, broken where a value is missing.
    let value_runs = runs(n, |i| s.values[i].is_some());
    chart
        .draw_series(value_runs.iter().map(|r| {
            PathElement::new(
                r.clone()
                    .filter_map(|i| s.values[i].map(|v| (i as f64, v)))
                    .collect::<Vec<_>>(),
                SERIES.stroke_width(1),
            )
        }))?
        .label("value")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], SERIES.stroke_width(2)));

    let expected_runs = runs(n, seen);
    chart
        .draw_series(expected_runs.iter().map(|r| {
            PathElement::new(
                r.clone()
                    .filter_map(|i| input.verdicts[i].map(|v| (i as f64, clamp(v.expected))))
                    .collect::<Vec<_>>(),
                EXPECTED.stroke_width(1),
            )
        }))?
        .label("expected")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], EXPECTED.stroke_width(2)));

    chart
        .draw_series(
            (0..n)
                .filter(|&i| input.flagged[i])
                .filter_map(|i| s.values[i].map(|v| Circle::new((i as f64, v), 3, FLAG.filled()))),
        )?
        .label("flagged")
        .legend(|(x, y)| Circle::new((x + 9, y), 4, FLAG.filled()));

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

fn draw_scores<'a>(area: &Area<'a>, input: &PlotInput<'_>) -> DrawResult<'a> {
    let s = input.series;
    let n = s.len();
    let score = |i: usize| input.verdicts[i].map_or(0.0, |v| v.score);
    let top = (0..n)
        .map(score)
        .fold(1.0f64, f64::max)
        .max(input.threshold.unwrap_or(0.0))
        * 1.05;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(60)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range(n), 0.0..top)?;
    let label = x_label(s);
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&label)
        .y_labels(6)
        .y_desc("anomaly score")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    if !input.windows.is_empty() {
        chart.draw_series(window_rects(input.windows, (0.0, top)))?;
    }
    let learning = runs(n, |i| input.verdicts[i].is_some_and(|v| v.learning));
    if !learning.is_empty() {
        chart
            .draw_series(learning.iter().map(|r| {
                Rectangle::new(
                    [(r.start as f64 - 0.5, 0.0), (r.end as f64 - 0.5, top)],
                    LEARNING.mix(0.15).filled(),
                )
            }))?
            .label("engine learning")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 6), (x + 18, y + 6)], LEARNING.mix(0.3).filled())
            });
    }
    chart
        .draw_series(LineSeries::new(
            (0..n).map(|i| (i as f64, score(i))),
            SERIES,
        ))?
        .label("anomaly score")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], SERIES.stroke_width(2)));
    if let Some(t) = input.threshold {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.5, t), (n as f64 - 0.5, t)],
                8,
                5,
                FLAG.stroke_width(2),
            ))?
            .label(format!("threshold {t:.4} (standard profile)"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], FLAG.stroke_width(2)));
        let p = probationary_period(n) as f64 - 0.5;
        chart
            .draw_series(DashedLineSeries::new(
                [(p, 0.0), (p, top)],
                4,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))?
            .label("end of NAB probation")
            .legend(|(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.5).stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: Vec<Option<f64>>) -> TimeSeries {
        let n = values.len();
        TimeSeries {
            name: "cat/x.csv".into(),
            category: "cat".into(),
            stem: "x".into(),
            timestamps: (0..n).map(|i| i.to_string()).collect(),
            unix_micros: (0..n as i64)
                .map(|i| 1_420_070_400_000_000 + i * 300_000_000)
                .collect(),
            values,
            notes: vec![],
        }
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
        let be = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    // `..Verdict::default()` keeps compiling when the engine adds fields.
    #[allow(clippy::needless_update)]
    fn draws_a_labelled_plot_with_gaps_and_learning() {
        let n = 5000;
        let mut values: Vec<Option<f64>> = (0..n).map(|i| Some((i as f64 / 50.0).sin())).collect();
        values[3000] = Some(25.0);
        values[100] = None;
        let s = series(values);
        let verdicts: Vec<Option<Verdict>> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.map(|v| Verdict {
                    score: if i == 3000 { 0.99 } else { 0.1 },
                    anomalous: i == 3000,
                    expected: v * 0.9,
                    lower: v - 0.5,
                    // A band blowing up to infinity must be clipped, not drawn.
                    upper: if i == 200 { f64::INFINITY } else { v + 1e12 },
                    learning: i < 64,
                    ..Verdict::default()
                })
            })
            .collect();
        let flagged: Vec<bool> = (0..n).map(|i| i == 3000).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = plot_path(dir.path(), "cat", "x");
        plot(
            &path,
            &PlotInput {
                series: &s,
                verdicts: &verdicts,
                windows: &[Window {
                    start: 2950,
                    end: 3100,
                }],
                flagged: &flagged,
                threshold: Some(0.9),
            },
        )
        .unwrap();
        assert_eq!(png_size(&path), (WIDTH, HEIGHT));
        assert!(!path.with_extension("tmp.png").exists());
    }

    #[test]
    fn draws_unlabelled_and_degenerate_series() {
        let dir = tempfile::tempdir().unwrap();
        for (name, values) in [
            ("flat", vec![Some(3.0); 10]),
            ("one", vec![Some(1.0)]),
            ("missing", vec![None, None]),
        ] {
            let s = series(values);
            let verdicts = vec![None; s.len()];
            let flagged = vec![false; s.len()];
            let path = plot_path(dir.path(), "cat", name);
            plot(
                &path,
                &PlotInput {
                    series: &s,
                    verdicts: &verdicts,
                    windows: &[],
                    flagged: &flagged,
                    threshold: None,
                },
            )
            .unwrap();
            assert_eq!(png_size(&path), (WIDTH, HEIGHT), "{name}");
        }
    }

    #[test]
    fn tick_labels_stay_short() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1.5e9), "1.50e9");
        assert_eq!(number(0.001), "1.00e-3");
    }
}
