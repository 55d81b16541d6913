//! The plotting layer: one place that draws a chart as an SVG string — lines, bootstrap
//! bands, points, iso-value contours, horizontal bars — on linear or log axes. `dctk fit
//! --plots` and `dctk report` both draw through it.
//!
//! Built on plotters' SVG backend: it is the maintained plotting crate of the Rust
//! ecosystem, renders pure SVG (no system fonts or native libraries, which a report that
//! must render anywhere needs), and its log axes place ticks at 1-2-5 × 10^k. plotters has
//! no contour routine, so [`contour_segments`] is marching squares (about 40 lines, below);
//! the `contour` crate would add GeoJSON geometry types we would only convert back.
//!
//! A chart is pure data ([`Chart`]) until [`Chart::to_svg`]; the fit plots
//! ([`write_residual_svg`], [`write_curve_svg`]) build charts from a fit report and write
//! them atomically (temp file in the same directory, then rename), so a reader never sees
//! half a file.

use std::path::Path;

use crate::data::Points;
use crate::error::{LawError, Result};
use crate::law::LawForm;
use crate::report::FitReport;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// A colour of a mark.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Hue {
    /// The i-th colour of a categorical palette (Tableau 10; it cycles).
    Category(usize),
    /// A position in [0, 1] on a sequential scale (viridis): a numeric setting.
    Scale(f64),
    Gray,
    Black,
}

const TABLEAU10: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Viridis at 0, 0.25, 0.5, 0.75, 1 (linear in between).
const VIRIDIS: [(f64, f64, f64); 5] = [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];

impl Hue {
    pub fn rgb(self) -> RGBColor {
        match self {
            Hue::Category(i) => {
                let (r, g, b) = TABLEAU10[i % TABLEAU10.len()];
                RGBColor(r, g, b)
            }
            Hue::Scale(t) => {
                // Stop short of viridis's pale yellow end, which is unreadable on white.
                let t = if t.is_finite() { t.clamp(0.0, 1.0) * 0.85 } else { 0.0 };
                let k = ((t * 4.0).floor() as usize).min(3);
                let f = t * 4.0 - k as f64;
                let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
                let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
                RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
            }
            Hue::Gray => RGBColor(150, 150, 150),
            Hue::Black => RGBColor(0, 0, 0),
        }
    }
}

/// How points are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Marker {
    Dot,
    /// Open circle: points that are not data the fit saw (held out, predicted).
    Ring,
    Cross,
}

/// One thing drawn on a chart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Mark {
    Line { points: Vec<(f64, f64)>, hue: Hue, label: Option<String>, dashed: bool },
    /// A filled region between `lower` and `upper` over `x` (a bootstrap band).
    Band { x: Vec<f64>, lower: Vec<f64>, upper: Vec<f64>, hue: Hue, label: Option<String> },
    Points { points: Vec<(f64, f64)>, hue: Hue, label: Option<String>, marker: Marker },
    /// Iso-value lines of `z` (`z[j][i]` at `(x[i], y[j])`), one per level, labelled.
    Contour { x: Vec<f64>, y: Vec<f64>, z: Vec<Vec<f64>>, levels: Vec<f64> },
    /// A horizontal reference line.
    HLine { y: f64, hue: Hue },
}

/// An axis: its label (a column's name with its unit) and whether it is logarithmic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Axis {
    pub label: String,
    pub log: bool,
}

impl Axis {
    pub fn linear(label: impl Into<String>) -> Axis {
        Axis { label: label.into(), log: false }
    }
    pub fn log(label: impl Into<String>) -> Axis {
        Axis { label: label.into(), log: true }
    }
}

/// A chart: a title, two axes and its marks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub marks: Vec<Mark>,
    pub size: (u32, u32),
}

/// Horizontal bars: one group per category, one bar per series (mixture proportions).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BarChart {
    pub title: String,
    pub value_label: String,
    pub categories: Vec<String>,
    pub series: Vec<(String, Vec<f64>)>,
    pub size: (u32, u32),
    /// One bar per category, the series stacked along it (a mixture's proportions),
    /// instead of one bar per series side by side.
    #[serde(default)]
    pub stacked: bool,
}

/// A category name cut to `max` characters from the left (`…unique_tokens=20000`): the end
/// of a sweep label is where cells differ.
fn fit_label(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max {
        name.to_string()
    } else {
        format!("…{}", chars[chars.len() - (max - 1)..].iter().collect::<String>())
    }
}

/// A tick label a person reads: `20k`, `1.5M`, `3e-4`, `0.25`.
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if v == 0.0 {
        "0".into()
    } else if a >= 1e15 || a < 1e-3 {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    } else if a >= 1e12 {
        trim(format!("{:.2}", v / 1e12)) + "T"
    } else if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.2}", v / 1e3)) + "k"
    } else {
        trim(format!("{v:.3}"))
    }
}

/// The finite range of `values`, padded by 5% (or by 5% in log10 on a log axis, where
/// non-positive values are left out).
fn range_of(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (lo, hi) = values.filter(|v| v.is_finite() && (!log || *v > 0.0)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return None;
    }
    if log {
        let (l0, l1) = (lo.log10(), hi.log10());
        let pad = ((l1 - l0) * 0.05).max(0.05);
        Some((10f64.powf(l0 - pad), 10f64.powf(l1 + pad)))
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-9 * hi.abs().max(1.0));
        Some((lo - pad, hi + pad))
    }
}

impl Mark {
    fn xs(&self) -> Vec<f64> {
        match self {
            Mark::Line { points, .. } | Mark::Points { points, .. } => points.iter().map(|p| p.0).collect(),
            Mark::Band { x, .. } | Mark::Contour { x, .. } => x.clone(),
            Mark::HLine { .. } => vec![],
        }
    }
    fn ys(&self) -> Vec<f64> {
        match self {
            Mark::Line { points, .. } | Mark::Points { points, .. } => points.iter().map(|p| p.1).collect(),
            Mark::Band { lower, upper, .. } => lower.iter().chain(upper).copied().collect(),
            Mark::Contour { y, .. } => y.clone(),
            Mark::HLine { y, .. } => vec![*y],
        }
    }
}

/// Segments of the `level` iso-line of `z` over the grid `x` × `y` (marching squares,
/// linear interpolation on cell edges; saddles resolved by the cell's mean).
pub fn contour_segments(x: &[f64], y: &[f64], z: &[Vec<f64>], level: f64) -> Vec<[(f64, f64); 2]> {
    let mut out = Vec::new();
    for j in 0..y.len().saturating_sub(1) {
        for i in 0..x.len().saturating_sub(1) {
            // Corners counter-clockwise from the bottom left.
            let c = [(x[i], y[j], z[j][i]), (x[i + 1], y[j], z[j][i + 1]), (x[i + 1], y[j + 1], z[j + 1][i + 1]), (x[i], y[j + 1], z[j + 1][i])];
            if c.iter().any(|p| !p.2.is_finite()) {
                continue;
            }
            let edge = |a: usize, b: usize| {
                let (p, q) = (c[a], c[b]);
                let t = (level - p.2) / (q.2 - p.2);
                (p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1))
            };
            let above: Vec<bool> = c.iter().map(|p| p.2 >= level).collect();
            let crossings: Vec<(f64, f64)> = (0..4).filter(|&k| above[k] != above[(k + 1) % 4]).map(|k| edge(k, (k + 1) % 4)).collect();
            match crossings.len() {
                2 => out.push([crossings[0], crossings[1]]),
                4 => {
                    // A saddle: pair the crossings so the segments separate the corners
                    // on the side of the cell's mean.
                    let mean = c.iter().map(|p| p.2).sum::<f64>() / 4.0;
                    if (mean >= level) == above[0] {
                        out.push([crossings[0], crossings[1]]);
                        out.push([crossings[2], crossings[3]]);
                    } else {
                        out.push([crossings[3], crossings[0]]);
                        out.push([crossings[1], crossings[2]]);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// At most `max` points of a polyline, evenly spaced in index, ends kept (a 10,000-step
/// training curve drawn as 10,000 SVG points would only make the file large).
pub fn thin<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max).map(|k| points[((k as f64 * step).round() as usize).min(points.len() - 1)].clone()).collect()
}

type Err = String;

fn e<E: std::fmt::Display>(x: E) -> Err {
    x.to_string()
}

impl Chart {
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Chart {
        Chart { title: title.into(), x, y, marks: Vec::new(), size: (640, 400) }
    }

    pub fn with(mut self, mark: Mark) -> Chart {
        self.marks.push(mark);
        self
    }

    pub fn push(&mut self, mark: Mark) {
        self.marks.push(mark);
    }

    /// The chart as an SVG document (no XML prolog: it can be inlined in HTML as is).
    pub fn to_svg(&self) -> std::result::Result<String, String> {
        let xr = range_of(self.marks.iter().flat_map(|m| m.xs()), self.x.log).unwrap_or(if self.x.log { (1.0, 10.0) } else { (0.0, 1.0) });
        let yr = range_of(self.marks.iter().flat_map(|m| m.ys()), self.y.log).unwrap_or(if self.y.log { (1.0, 10.0) } else { (0.0, 1.0) });
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size).into_drawing_area();
            root.fill(&WHITE).map_err(e)?;
            match (self.x.log, self.y.log) {
                (false, false) => self.draw(&root, xr.0..xr.1, yr.0..yr.1)?,
                (true, false) => self.draw(&root, (xr.0..xr.1).log_scale(), yr.0..yr.1)?,
                (false, true) => self.draw(&root, xr.0..xr.1, (yr.0..yr.1).log_scale())?,
                (true, true) => self.draw(&root, (xr.0..xr.1).log_scale(), (yr.0..yr.1).log_scale())?,
            }
            root.present().map_err(e)?;
        }
        Ok(strip_prolog(svg))
    }

    fn draw<X, Y>(&self, root: &DrawingArea<SVGBackend, Shift>, x: X, y: Y) -> std::result::Result<(), Err>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)
            .map_err(e)?;
        let (x_range, y_range) = (chart.x_range(), chart.y_range());
        let inside = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite() && p.1 >= y_range.start && p.1 <= y_range.end && p.0 >= x_range.start && p.0 <= x_range.end;
        chart
            .configure_mesh()
            .x_desc(&self.x.label)
            .y_desc(&self.y.label)
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            // Fixed sizes: plotters' defaults scale with the chart's height.
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(e)?;
        let mut legend = 0usize;
        // Bands first, so lines and points sit on top of them.
        let mut order: Vec<&Mark> = self.marks.iter().filter(|m| matches!(m, Mark::Band { .. })).collect();
        order.extend(self.marks.iter().filter(|m| !matches!(m, Mark::Band { .. })));
        for mark in order {
            match mark {
                Mark::Band { x, lower, upper, hue, label } => {
                    let mut poly: Vec<(f64, f64)> = x.iter().zip(upper).map(|(a, b)| (*a, b.clamp(y_range.start, y_range.end))).collect();
                    poly.extend(x.iter().zip(lower).rev().map(|(a, b)| (*a, b.clamp(y_range.start, y_range.end))));
                    poly.retain(|p| p.0.is_finite() && p.1.is_finite());
                    let color = hue.rgb().mix(0.22);
                    let series = chart.draw_series(std::iter::once(Polygon::new(poly, color.filled()))).map_err(e)?;
                    if let Some(l) = label {
                        legend += 1;
                        series.label(l).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.filled()));
                    }
                }
                Mark::Line { points, hue, label, dashed } => {
                    let color = hue.rgb();
                    let style = color.stroke_width(2);
                    // Split at points outside the plotted range (a law diverging at its edge).
                    let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![]];
                    for p in points {
                        if inside(p) {
                            runs.last_mut().unwrap().push(*p);
                        } else if !runs.last().unwrap().is_empty() {
                            runs.push(vec![]);
                        }
                    }
                    runs.retain(|r| !r.is_empty());
                    let mut first = true;
                    for run in runs {
                        let series = if *dashed {
                            chart.draw_series(std::iter::once(DashedPathElement::new(run.into_iter(), 6, 4, style))).map_err(e)?
                        } else {
                            chart.draw_series(std::iter::once(PathElement::new(run, style))).map_err(e)?
                        };
                        if first {
                            if let Some(l) = label {
                                legend += 1;
                                series.label(l).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                            }
                        }
                        first = false;
                    }
                }
                Mark::Points { points, hue, label, marker } => {
                    let color = hue.rgb();
                    let pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| inside(p)).collect();
                    let marker = *marker;
                    let series = match marker {
                        Marker::Dot => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(e)?,
                        Marker::Ring => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.stroke_width(2)))).map_err(e)?,
                        Marker::Cross => chart.draw_series(pts.into_iter().map(|p| Cross::new(p, 4, color.stroke_width(2)))).map_err(e)?,
                    };
                    if let Some(l) = label {
                        legend += 1;
                        series.label(l).legend(move |(x, y)| match marker {
                            Marker::Ring => Circle::new((x + 9, y), 4, color.stroke_width(2)),
                            _ => Circle::new((x + 9, y), 3, color.filled()),
                        });
                    }
                }
                Mark::Contour { x, y, z, levels } => {
                    for (k, level) in levels.iter().enumerate() {
                        let hue = Hue::Scale(if levels.len() > 1 { k as f64 / (levels.len() - 1) as f64 } else { 0.5 });
                        let segs = contour_segments(x, y, z, *level);
                        let color = hue.rgb();
                        chart.draw_series(segs.iter().map(|s| PathElement::new(vec![s[0], s[1]], color.stroke_width(1)))).map_err(e)?;
                        // Label each level once, at its middle segment.
                        if let Some(s) = segs.get(segs.len() / 2) {
                            chart
                                .draw_series(std::iter::once(Text::new(format!("{level:.3}"), s[0], ("sans-serif", 11).into_font().color(&color))))
                                .map_err(e)?;
                        }
                    }
                }
                Mark::HLine { y, hue } => {
                    let color = hue.rgb();
                    chart.draw_series(std::iter::once(PathElement::new(vec![(x_range.start, *y), (x_range.end, *y)], color.stroke_width(1)))).map_err(e)?;
                }
            }
        }
        if legend > 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(e)?;
        }
        Ok(())
    }
}

impl BarChart {
    pub fn to_svg(&self) -> std::result::Result<String, String> {
        let n = self.categories.len().max(1);
        let k = self.series.len().max(1);
        let height = self.size.1.max(110 + 26 * n as u32).max(if self.stacked { 110 + 18 * k as u32 } else { 0 });
        let max = if self.stacked {
            (0..n).map(|i| self.series.iter().map(|(_, v)| v.get(i).copied().filter(|x| x.is_finite()).unwrap_or(0.0)).sum::<f64>()).fold(0.0f64, f64::max)
        } else {
            self.series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite()).fold(0.0f64, f64::max)
        }
        .max(1e-12)
            * if self.stacked { 1.02 } else { 1.1 };
        let cats: Vec<String> = self.categories.iter().map(|c| fit_label(c, 44)).collect();
        let label_width = (cats.iter().map(|c| c.chars().count()).max().unwrap_or(4) as u32 * 7 + 16).clamp(60, 330);
        // Room at the right for the legend of a stacked chart.
        let right = if self.stacked && k > 1 { 120 } else { 12 };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (self.size.0 + label_width.saturating_sub(110), height)).into_drawing_area();
            root.fill(&WHITE).map_err(e)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 18))
                .margin(12)
                .margin_right(right)
                .x_label_area_size(40)
                .y_label_area_size(label_width)
                .build_cartesian_2d(0.0..max, 0.0..n as f64)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(&self.value_label)
                .x_label_formatter(&|v| tick_label(*v))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .y_labels(0)
                .disable_y_mesh()
                .draw()
                .map_err(e)?;
            // Category names at the bars' centres (the mesh's own ticks sit at round values).
            let font = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
            for (i, name) in cats.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(0.0, (n - 1 - i) as f64 + 0.5));
                root.draw(&Text::new(name.clone(), (px - 8, py), font.clone())).map_err(e)?;
            }
            let band = 0.8 / k as f64;
            let mut offsets = vec![0.0f64; n];
            for (s, (name, values)) in self.series.iter().enumerate() {
                let color = Hue::Category(s).rgb();
                let rects: Vec<Rectangle<(f64, f64)>> = values
                    .iter()
                    .enumerate()
                    .filter(|(i, v)| v.is_finite() && *i < n)
                    .map(|(i, v)| {
                        if self.stacked {
                            let (lo, bottom) = (offsets[i], (n - 1 - i) as f64 + 0.15);
                            offsets[i] += v;
                            Rectangle::new([(lo, bottom), (lo + v, bottom + 0.7)], color.filled())
                        } else {
                            let top = (n - 1 - i) as f64 + 0.9 - s as f64 * band;
                            Rectangle::new([(0.0, top - band), (*v, top)], color.filled())
                        }
                    })
                    .collect();
                let series = chart.draw_series(rects).map_err(e)?;
                if k > 1 && !self.stacked {
                    series.label(name).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.filled()));
                }
            }
            if self.stacked && k > 1 {
                // The legend right of the plot, drawn on the whole area (a chart's own legend
                // is clipped to its plotting area).
                let (x0, y0) = chart.backend_coord(&(max, n as f64));
                let font = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
                for (s, (name, _)) in self.series.iter().enumerate() {
                    let y = y0 + 8 + 18 * s as i32;
                    root.draw(&Rectangle::new([(x0 + 12, y - 5), (x0 + 26, y + 5)], Hue::Category(s).rgb().filled())).map_err(e)?;
                    root.draw(&Text::new(fit_label(name, 14), (x0 + 31, y), font.clone())).map_err(e)?;
                }
            }
            if k > 1 && !self.stacked {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(200, 200, 200))
                    .draw()
                    .map_err(e)?;
            }
            root.present().map_err(e)?;
        }
        Ok(strip_prolog(svg))
    }
}

/// plotters writes `<?xml …?>` first; inline SVG in HTML must not have it.
fn strip_prolog(svg: String) -> String {
    match svg.find("<svg") {
        Some(i) if i > 0 => svg[i..].to_string(),
        _ => svg,
    }
}

/// Write `contents` to `path` atomically and durably ([`dctk_fs::write_atomic`]).
fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    dctk_fs::write_atomic(path, contents).map_err(|source| LawError::Io { path: path.display().to_string(), source })
}

fn plot_err(path: &Path) -> impl Fn(String) -> LawError + '_ {
    move |message| LawError::Plot { path: path.display().to_string(), message }
}

/// Whether a column spans enough decades to be drawn on a log axis.
pub fn spans_decades(values: &[f64]) -> bool {
    let pos: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if pos.is_empty() || pos.iter().any(|v| *v <= 0.0) {
        return false;
    }
    let (lo, hi) = pos.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    hi / lo >= 20.0
}

/// The residual chart of a fit: residual in the fit space (ln L̂ − ln L, or L̂ − L) against
/// the first input.
pub fn residual_chart(report: &FitReport, points: &Points) -> Result<Chart> {
    let x_name = report.inputs.first().ok_or_else(|| LawError::Plot { path: String::new(), message: "the law has no inputs to plot against".into() })?;
    let x = points.column(x_name)?.to_vec();
    let log_space = report.objective.contains("ln residuals");
    let res: Vec<(f64, f64)> = x
        .iter()
        .zip(report.fitted.iter().zip(&report.observed))
        .map(|(xv, (f, o))| (*xv, if log_space { f.ln() - o.ln() } else { f - o }))
        .collect();
    let y_label = if log_space { "ln fitted − ln observed" } else { "fitted − observed" };
    let x_axis = if spans_decades(&x) { Axis::log(x_name.clone()) } else { Axis::linear(x_name.clone()) };
    Ok(Chart::new(format!("{}: residuals", report.law), x_axis, Axis::linear(y_label))
        .with(Mark::HLine { y: 0.0, hue: Hue::Black })
        .with(Mark::Points { points: res, hue: Hue::Category(0), label: None, marker: Marker::Dot }))
}

/// The fitted-curve chart of a fit: observed losses (dots) against the first input, the
/// law drawn as lines; when the law has more inputs, one line per quantile (10, 30, 50,
/// 70, 90%) of the second input, the remaining inputs held at their medians; with
/// `bootstrap` parameter draws, each line has its percentile band at `level`. With
/// `predicted` (points the law was asked about, and its predictions there), the lines
/// extend to them, dashed beyond the data ("extrapolation"), and the predictions are open
/// circles.
pub fn curve_chart(
    report: &FitReport,
    law: &dyn LawForm,
    params: &[f64],
    points: &Points,
    bootstrap: &[Vec<f64>],
    level: f64,
    predicted: Option<(&Points, &[f64])>,
) -> Result<Chart> {
    let names = &report.inputs;
    let x_name = names.first().ok_or_else(|| LawError::Plot { path: String::new(), message: "the law has no inputs to plot against".into() })?;
    let x = points.column(x_name)?.to_vec();
    let px: Vec<f64> = match predicted {
        Some((at, _)) => at.column(x_name)?.to_vec(),
        None => vec![],
    };
    let all: Vec<f64> = x.iter().chain(&px).copied().collect();
    let log_x = spans_decades(&all);
    let bounds = |v: &[f64]| v.iter().copied().filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = bounds(&all);
    let (data_lo, data_hi) = bounds(&x);
    let grid: Vec<f64> = (0..=100)
        .map(|i| {
            let t = i as f64 / 100.0;
            if log_x {
                10f64.powf(lo.log10() + t * (hi.log10() - lo.log10()))
            } else {
                lo + t * (hi - lo)
            }
        })
        .collect();
    let quantile = |col: &[f64], q: f64| -> f64 {
        let mut v = col.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let slices: Vec<f64> = if names.len() > 1 { vec![0.1, 0.3, 0.5, 0.7, 0.9] } else { vec![0.5] };
    let x_axis = if log_x { Axis::log(x_name.clone()) } else { Axis::linear(x_name.clone()) };
    let mut chart = Chart::new(format!("{}: data and fitted law", report.law), x_axis, Axis::linear("loss"));
    let mut seen = Vec::new();
    for &q in &slices {
        let mut cols = vec![grid.clone()];
        let mut label = String::from("fit");
        for (k, name) in names.iter().enumerate().skip(1) {
            let col = points.column(name)?;
            let v = quantile(col, if k == 1 { q } else { 0.5 });
            if k == 1 {
                label = format!("{name} = {}", tick_label(v));
            }
            cols.push(vec![v; grid.len()]);
        }
        if seen.contains(&label) {
            continue;
        }
        seen.push(label.clone());
        let hue = Hue::Category(seen.len() - 1);
        let inputs = crate::law::Inputs::new(names.clone(), cols);
        if bootstrap.len() >= 10 {
            let draws: Vec<Vec<f64>> = bootstrap.iter().map(|p| law.predict(p, &inputs)).collect();
            let (lower, upper) = percentile_band(&draws, level);
            let band_label = (seen.len() == 1).then(|| format!("{:.0}% bootstrap band", level * 100.0));
            chart.push(Mark::Band { x: grid.clone(), lower, upper, hue, label: band_label });
        }
        let y = law.predict(params, &inputs);
        let line: Vec<(f64, f64)> = grid.iter().copied().zip(y).collect();
        let within = |p: &(f64, f64)| p.0 >= data_lo * (1.0 - 1e-12) && p.0 <= data_hi * (1.0 + 1e-12);
        chart.push(Mark::Line { points: line.iter().copied().filter(within).collect(), hue, label: Some(label), dashed: false });
        // Beyond the data, on either side: extrapolation, dashed.
        let below: Vec<(f64, f64)> = line.iter().copied().filter(|p| p.0 <= data_lo).collect();
        let above: Vec<(f64, f64)> = line.iter().copied().filter(|p| p.0 >= data_hi).collect();
        for part in [below, above] {
            if part.len() > 1 {
                chart.push(Mark::Line { points: part, hue, label: None, dashed: true });
            }
        }
    }
    chart.push(Mark::Points { points: x.iter().copied().zip(report.observed.iter().copied()).collect(), hue: Hue::Black, label: Some("observed".into()), marker: Marker::Dot });
    if let Some((_, values)) = predicted {
        if !px.is_empty() {
            chart.push(Mark::Points { points: px.iter().copied().zip(values.iter().copied()).collect(), hue: Hue::Category(3), label: Some("predicted (extrapolation)".into()), marker: Marker::Ring });
        }
    }
    Ok(chart)
}

/// The pointwise percentile band at `level` of bootstrap `draws` (each the law along the
/// same grid): (lower, upper), NaN where no draw is finite.
pub fn percentile_band(draws: &[Vec<f64>], level: f64) -> (Vec<f64>, Vec<f64>) {
    let n = draws.first().map_or(0, Vec::len);
    let (mut lower, mut upper) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let mut at: Vec<f64> = draws.iter().map(|d| d[i]).filter(|v| v.is_finite()).collect();
        if at.is_empty() {
            lower.push(f64::NAN);
            upper.push(f64::NAN);
        } else {
            let iv = crate::fit::percentile_interval(&mut at, level);
            lower.push(iv.lower);
            upper.push(iv.upper);
        }
    }
    (lower, upper)
}

/// Residual plot of a fit, written as an SVG file.
pub fn write_residual_svg(report: &FitReport, points: &Points, path: &Path) -> Result<()> {
    let svg = residual_chart(report, points).map_err(|e| plot_err(path)(e.to_string()))?.to_svg().map_err(plot_err(path))?;
    write_atomic(path, svg.as_bytes())
}

/// Fitted-curve plot of a fit (see [`curve_chart`]; with `bootstrap` draws, their band),
/// written as an SVG file.
pub fn write_curve_svg(report: &FitReport, law: &dyn LawForm, params: &[f64], points: &Points, bootstrap: &[Vec<f64>], path: &Path) -> Result<()> {
    let level = report.bootstrap.as_ref().map_or(0.95, |b| b.level);
    let svg = curve_chart(report, law, params, points, bootstrap, level, None).map_err(|e| plot_err(path)(e.to_string()))?.to_svg().map_err(plot_err(path))?;
    write_atomic(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contours_of_a_plane_are_straight_lines_at_the_level() {
        // z = x + y on [0, 1]²: the 1.0 iso-line is x + y = 1.
        let g: Vec<f64> = (0..=10).map(|i| i as f64 / 10.0).collect();
        let z: Vec<Vec<f64>> = g.iter().map(|y| g.iter().map(|x| x + y).collect()).collect();
        let segs = contour_segments(&g, &g, &z, 1.0);
        assert!(!segs.is_empty());
        for s in &segs {
            for p in s {
                assert!((p.0 + p.1 - 1.0).abs() < 1e-12, "{p:?}");
            }
        }
        assert!(contour_segments(&g, &g, &z, 5.0).is_empty());
    }

    #[test]
    fn tick_labels_read_as_quantities() {
        assert_eq!(tick_label(20_000.0), "20k");
        assert_eq!(tick_label(1_500_000.0), "1.5M");
        assert_eq!(tick_label(3e-4), "3e-4");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(6.0), "6");
    }

    #[test]
    fn charts_render_on_log_and_linear_axes_with_every_mark() {
        let pts: Vec<(f64, f64)> = (1..=50).map(|i| (1e3 * i as f64, 5.0 / (i as f64).sqrt())).collect();
        let g: Vec<f64> = (0..20).map(|i| 10f64.powf(3.0 + i as f64 * 0.1)).collect();
        let z: Vec<Vec<f64>> = g.iter().map(|y| g.iter().map(|x| 1.0 / x.ln() + 1.0 / y.ln()).collect()).collect();
        let chart = Chart::new("t", Axis::log("tokens"), Axis::log("loss"))
            .with(Mark::Line { points: pts.clone(), hue: Hue::Category(1), label: Some("a".into()), dashed: true })
            .with(Mark::Band { x: pts.iter().map(|p| p.0).collect(), lower: pts.iter().map(|p| p.1 * 0.9).collect(), upper: pts.iter().map(|p| p.1 * 1.1).collect(), hue: Hue::Scale(0.3), label: Some("band".into()) })
            .with(Mark::Points { points: pts, hue: Hue::Black, label: None, marker: Marker::Ring })
            .with(Mark::Contour { x: g.clone(), y: g, z, levels: vec![0.25, 0.27] });
        let svg = chart.to_svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("tokens") && svg.contains("polygon"), "{}", &svg[..200]);
        let bars = BarChart { title: "mix".into(), value_label: "proportion".into(), categories: vec!["code".into(), "math".into()], series: vec![("a".into(), vec![0.3, 0.7]), ("b".into(), vec![0.5, 0.5])], size: (600, 200), stacked: true };
        let svg = bars.to_svg().unwrap();
        assert!(svg.contains("code") && svg.contains("math"));
    }
}
