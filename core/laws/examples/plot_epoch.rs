//! Fit Chinchilla's law to a CSV and write the text report, JSON and both
//! plots: `cargo run --release -p dctk-laws --example plot_epoch -- CSV OUT_DIR`.
//! The column mapping is Epoch's (N = Model Size, D = C/(6N)).

use dctk_laws::{builtin, fit, ColumnMap, FitOptions, LawOptions, Points};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (csv, out) = match (args.get(1), args.get(2)) {
        (Some(c), Some(o)) => (c.clone(), std::path::PathBuf::from(o)),
        _ => return Err("usage: plot_epoch CSV OUT_DIR".into()),
    };
    let points = Points::from_csv(&csv, &ColumnMap::parse("N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss")?)?;
    let f = fit(builtin("chinchilla", &LawOptions::default())?, &points, &FitOptions::default())?;
    std::fs::create_dir_all(&out)?;
    println!("{}", f.report.to_text());
    std::fs::write(out.join("fit.json"), f.report.to_json())?;
    f.write_residual_svg(out.join("residuals.svg"))?;
    f.write_curve_svg(out.join("curve.svg"))?;
    Ok(())
}
