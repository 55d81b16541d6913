//! SVG plots of a fit: the residuals and the fitted curve, drawn from the report's
//! observed and fitted losses, the law and the points (the report stays pure data).
//! Plots are written atomically (temp file in the same directory, then rename) so a
//! reader never sees half a file.

use std::path::Path;

use crate::data::Points;
use crate::error::{LawError, Result};
use crate::law::LawForm;
use crate::report::FitReport;
use plotters::prelude::*;

/// Write `contents` to `path` atomically and durably ([`dctk_fs::write_atomic`]).
fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    dctk_fs::write_atomic(path, contents).map_err(|source| LawError::Io { path: path.display().to_string(), source })
}

fn plot_err(path: &Path) -> impl Fn(String) -> LawError + '_ {
    move |message| LawError::Plot { path: path.display().to_string(), message }
}

fn range_of(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-12 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

/// Residual plot: residual in the fit space (ln L̂ − ln L, or L̂ − L)
/// against the first input on a log axis.
pub fn write_residual_svg(report: &FitReport, points: &Points, path: &Path) -> Result<()> {
    let err = plot_err(path);
    let x_name = report.inputs.first().ok_or_else(|| err("the law has no inputs to plot against".into()))?;
    let x = points.column(x_name)?.to_vec();
    let log_space = report.objective.contains("ln residuals");
    let res: Vec<f64> = report
        .fitted
        .iter()
        .zip(&report.observed)
        .map(|(f, o)| if log_space { f.ln() - o.ln() } else { f - o })
        .collect();
    let (x0, x1) = range_of(x.iter().map(|v| v.max(1e-300).log10()));
    let (y0, y1) = range_of(res.iter().copied().chain([0.0]));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: residuals", report.law), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(format!("log10 {x_name}"))
            .y_desc(if log_space { "ln fitted - ln observed" } else { "fitted - observed" })
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], BLACK)).map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(x.iter().zip(&res).map(|(xv, r)| Circle::new((xv.log10(), *r), 3, BLUE.filled())))
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Fitted-curve plot: observed losses (dots) against the first input on
/// a log axis, with the fitted law drawn as lines. When the law has more
/// inputs, one line per quantile (10, 30, 50, 70, 90%) of the second
/// input, the remaining inputs held at their medians.
pub fn write_curve_svg(report: &FitReport, law: &dyn LawForm, params: &[f64], points: &Points, path: &Path) -> Result<()> {
    let err = plot_err(path);
    let names = &report.inputs;
    let x_name = names.first().ok_or_else(|| err("the law has no inputs to plot against".into()))?;
    let x = points.column(x_name)?.to_vec();
    let (lx0, lx1) = range_of(x.iter().map(|v| v.max(1e-300).log10()));
    let quantile = |col: &[f64], q: f64| -> f64 {
        let mut v = col.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let slices: Vec<f64> = if names.len() > 1 { vec![0.1, 0.3, 0.5, 0.7, 0.9] } else { vec![0.5] };
            let grid: Vec<f64> = (0..=100).map(|i| lx0 + (lx1 - lx0) * i as f64 / 100.0).collect();
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for &q in &slices {
        let mut cols = vec![grid.iter().map(|l| 10f64.powf(*l)).collect::<Vec<f64>>()];
        let mut label = String::from("fit");
        for (k, name) in names.iter().enumerate().skip(1) {
            let col = points.column(name)?;
            let v = quantile(col, if k == 1 { q } else { 0.5 });
            if k == 1 {
                label = format!("{name} = {v:.3e}");
            }
            cols.push(vec![v; grid.len()]);
        }
        let inputs = crate::law::Inputs::new(names.clone(), cols);
        let y = law.predict(params, &inputs);
        curves.push((label, grid.iter().copied().zip(y).filter(|(_, y)| y.is_finite()).collect()));
    }
    let (y0, y1) = range_of(report.observed.iter().copied());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: fitted curve", report.law), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lx0..lx1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart.configure_mesh().x_desc(format!("log10 {x_name}")).y_desc("loss").draw().map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(x.iter().zip(&report.observed).map(|(xv, y)| Circle::new((xv.log10(), *y), 3, BLACK.filled())))
            .map_err(|e| err(e.to_string()))?;
        for (i, (label, pts)) in curves.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let clipped: Vec<(f64, f64)> = pts.into_iter().filter(|(_, y)| *y >= y0 && *y <= y1).collect();
            chart
                .draw_series(LineSeries::new(clipped, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
}
