//! The report page: one self-contained HTML file — inline SVG charts, inline CSS and a
//! few lines of our own JavaScript (table sorting, CSV downloads) — that needs no network
//! and no other file, so it opens the same from a bundle copied anywhere.
//!
//! Sections appear when the study has their data: the study (cells by status, FLOPs,
//! time, versions, what changed), training curves, fits, data-constrained views, mixtures
//! and synthetic data, the results table and the script's output. Every chart is a
//! `<figure class="plot" data-plot="NAME">` holding one `<svg>`; every table is sortable
//! and has a CSV download.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use dctk_laws::plot::{tick_label, Axis, BarChart, Chart, Hue, Mark, Marker};
use serde_json::Value;

use super::collect::{CellView, StudyView};

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e9eef5;font-size:13px}nav a{margin-right:14px;color:#1f3a5f}
main{padding:8px 28px 40px;max-width:1500px}section{margin-top:22px}h2{border-bottom:2px solid #1f3a5f;padding-bottom:4px;font-size:19px}
h3{font-size:15px;margin:18px 0 6px}.plots{display:flex;flex-wrap:wrap;gap:12px}
figure.plot{margin:0;background:#fff;border:1px solid #ddd;border-radius:4px;padding:4px}figure.plot svg{display:block;max-width:100%;height:auto}
figcaption{font-size:12px;color:#555;padding:2px 6px 4px;max-width:720px}
.badge{display:inline-block;padding:2px 9px;border-radius:10px;font-size:12px;margin-right:6px;color:#fff}
.s-done{background:#2c7a3f}.s-diverged{background:#b36b00}.s-failed{background:#b3261e}.s-interrupted,.s-running{background:#5561a8}.s-not-run{background:#888}
table{border-collapse:collapse;font-size:12px;background:#fff;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f5;cursor:pointer;user-select:none;white-space:nowrap}th.sorted-asc::after{content:" \25B2"}th.sorted-desc::after{content:" \25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.st-failed td{background:#fdecea}tr.st-diverged td{background:#fff4e0}
.tablewrap{max-height:520px;overflow:auto;display:inline-block;max-width:100%}
div.tbl{margin:6px 0 14px}button.csv{display:block;font-size:11px;margin:2px 0 0;cursor:pointer}.warn{background:#fff4e0;border-left:4px solid #b36b00;padding:4px 10px;margin:4px 0;font-size:13px}
.note{color:#555;font-size:13px}pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;max-height:420px;font-size:12px}
code{background:#eef1f5;padding:0 3px}header code{background:rgba(255,255,255,.18);color:#fff}
"#;

/// Table sorting and CSV downloads: our own, small, and inline (no CDN, no network).
const SCRIPT: &str = r#"
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;var n=parseFloat(v);return isNaN(n)||!/^\s*[-+]?(\d|\.\d|inf|nan)/i.test(v)?{s:v.toLowerCase()}:{n:n};}
  function cmp(a,b){if(a.n!==undefined&&b.n!==undefined)return a.n-b.n;if(a.n!==undefined)return -1;if(b.n!==undefined)return 1;return a.s<b.s?-1:a.s>b.s?1:0;}
  document.querySelectorAll('table.sortable').forEach(function(t){
    var ths=t.querySelectorAll('thead th');
    ths.forEach(function(th,i){th.addEventListener('click',function(){
      var asc=!th.classList.contains('sorted-asc');ths.forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');var body=t.tBodies[0];
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(r1,r2){var c=cmp(key(r1.cells[i]),key(r2.cells[i]));return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});});});
  });
  function csvCell(s){return /[",\n]/.test(s)?'"'+s.replace(/"/g,'""')+'"':s;}
  document.querySelectorAll('button.csv').forEach(function(b){b.addEventListener('click',function(){
    var t=document.getElementById(b.getAttribute('data-table'));var lines=[];
    Array.prototype.forEach.call(t.rows,function(r){lines.push(Array.prototype.map.call(r.cells,function(c){var v=c.getAttribute('data-v');return csvCell(v===null?c.textContent:v);}).join(','));});
    var url=URL.createObjectURL(new Blob([lines.join('\n')+'\n'],{type:'text/csv'}));
    var a=document.createElement('a');a.href=url;a.download=b.getAttribute('data-file');document.body.appendChild(a);a.click();a.remove();
    setTimeout(function(){URL.revokeObjectURL(url);},1000);});});
  document.body.setAttribute('data-ready','1');
})();
"#;

/// A cell of an HTML table: its text and, for numbers, the exact value (sorting and CSV use it).
pub enum Cell {
    Text(String),
    Num(f64),
    Int(i64),
}

impl Cell {
    fn html(&self) -> String {
        match self {
            Cell::Text(s) => format!("<td>{}</td>", escape(s)),
            Cell::Num(v) if v.is_finite() => format!("<td class=\"num\" data-v=\"{v}\">{}</td>", fmt_num(*v)),
            Cell::Num(v) => format!("<td class=\"num\" data-v=\"{v}\">{v}</td>"),
            Cell::Int(v) => format!("<td class=\"num\">{v}</td>"),
        }
    }
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if a >= 1e6 || a < 1e-3 {
        format!("{v:.4e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn num_or_text(v: Option<&Value>) -> Cell {
    match v {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Value::String(s)) => Cell::Text(s.clone()),
        Some(Value::Null) | None => Cell::Text(String::new()),
        Some(other) => Cell::Text(other.to_string()),
    }
}

/// The page being written.
struct Page {
    body: String,
    tables: usize,
    plots: usize,
    toc: Vec<(String, String)>,
}

impl Page {
    fn section(&mut self, id: &str, title: &str) {
        if !self.toc.is_empty() {
            self.body.push_str("</section>\n");
        }
        self.toc.push((id.to_string(), title.to_string()));
        let _ = write!(self.body, "<section id=\"{id}\" data-section=\"{id}\"><h2>{}</h2>\n", escape(title));
    }

    fn h3(&mut self, title: &str) {
        let _ = writeln!(self.body, "<h3>{}</h3>", escape(title));
    }

    fn p(&mut self, html: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{html}</p>");
    }

    fn table(&mut self, file: &str, columns: &[String], rows: &[(Option<&str>, Vec<Cell>)]) {
        self.tables += 1;
        let id = format!("t{}", self.tables);
        let _ = write!(self.body, "<div class=\"tbl\"><div class=\"tablewrap\"><table class=\"sortable\" id=\"{id}\"><thead><tr>");
        for c in columns {
            let _ = write!(self.body, "<th>{}</th>", escape(c));
        }
        self.body.push_str("</tr></thead><tbody>\n");
        for (class, row) in rows {
            match class {
                Some(c) => {
                    let _ = write!(self.body, "<tr class=\"{c}\">");
                }
                None => self.body.push_str("<tr>"),
            }
            for cell in row {
                self.body.push_str(&cell.html());
            }
            self.body.push_str("</tr>\n");
        }
        let _ = writeln!(
            self.body,
            "</tbody></table></div><button class=\"csv\" data-table=\"{id}\" data-file=\"{}\">download CSV</button></div>",
            escape(file)
        );
    }

    fn figure(&mut self, name: &str, svg: Result<String, String>, caption: &str) {
        match svg {
            Ok(svg) => {
                self.plots += 1;
                let _ = writeln!(self.body, "<figure class=\"plot\" data-plot=\"{}\">{svg}<figcaption>{}</figcaption></figure>", escape(name), escape(caption));
            }
            Err(e) => {
                let _ = writeln!(self.body, "<p class=\"warn\">the plot {} could not be drawn: {}</p>", escape(name), escape(&e));
            }
        }
    }

    fn plots_open(&mut self) {
        self.body.push_str("<div class=\"plots\">\n");
    }
    fn plots_close(&mut self) {
        self.body.push_str("</div>\n");
    }
}

/// How cells are coloured by one setting: numbers on a sequential scale (log when they
/// span decades), anything else by category.
struct Colouring {
    hues: Vec<Hue>,
    /// The legend label of the first cell of each value.
    labels: Vec<Option<String>>,
}

fn colouring(cells: &[&CellView], setting: Option<&str>) -> Colouring {
    let values: Vec<String> = cells.iter().map(|c| setting.and_then(|s| c.settings.get(s).cloned()).unwrap_or_else(|| c.label.clone())).collect();
    let nums: Option<Vec<f64>> = values.iter().map(|v| v.trim_matches('"').parse::<f64>().ok()).collect();
    let mut distinct: Vec<String> = Vec::new();
    for v in &values {
        if !distinct.contains(v) {
            distinct.push(v.clone());
        }
    }
    let hues = match (&nums, setting) {
        (Some(n), Some(_)) if distinct.len() > 1 => {
            let log = dctk_laws::plot::spans_decades(n);
            let t = |x: f64| if log { x.log10() } else { x };
            let (lo, hi) = n.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(t(*x)), b.max(t(*x))));
            n.iter().map(|x| Hue::Scale(if hi > lo { (t(*x) - lo) / (hi - lo) } else { 0.5 })).collect()
        }
        _ => values.iter().map(|v| Hue::Category(distinct.iter().position(|d| d == v).unwrap_or(0))).collect(),
    };
    let mut shown: Vec<&String> = Vec::new();
    let labels = values
        .iter()
        .zip(cells)
        .map(|(v, c)| {
            let flag = match c.status.as_str() {
                "done" => String::new(),
                s => format!(" ({s})"),
            };
            if distinct.len() > 12 {
                return None;
            }
            if shown.contains(&v) && flag.is_empty() {
                return None;
            }
            shown.push(v);
            Some(match setting {
                // A long value (a map of settings) reads better as the cell's own label.
                Some(_) if v.len() > 40 => format!("{}{flag}", c.label),
                Some(s) => format!("{s} = {}{flag}", v.trim_matches('"')),
                None => format!("{v}{flag}"),
            })
        })
        .collect();
    Colouring { hues, labels }
}

fn line_for(cell: &CellView, points: Vec<(f64, f64)>, hue: Hue, label: Option<String>) -> Mark {
    // An unfinished cell's curve is dashed: it is not a final result.
    Mark::Line { points, hue, label, dashed: cell.status != "done" }
}

fn curves(page: &mut Page, study: &StudyView) {
    let with_evals: Vec<&CellView> = study.cells.iter().filter(|c| !c.evals.is_empty()).collect();
    if with_evals.is_empty() {
        return;
    }
    page.section("curves", "Training curves");
    // One chart per setting that takes two values or more among these cells (six at most).
    let mut dims: Vec<Option<&str>> = study
        .varying
        .iter()
        .filter(|v| {
            let mut seen: Vec<&str> = with_evals.iter().filter_map(|c| c.settings.get(v.as_str()).map(String::as_str)).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len() > 1
        })
        .take(6)
        .map(|v| Some(v.as_str()))
        .collect();
    if dims.is_empty() {
        dims.push(None);
    }
    let val_log = with_evals.iter().flat_map(|c| c.evals.iter().map(|e| e.val_loss)).filter(|v| v.is_finite()).collect::<Vec<_>>();
    // Tokens on a log axis when they span decades (step 0, at 0 tokens, is left off it).
    let tokens: Vec<f64> = with_evals.iter().flat_map(|c| c.evals.iter().map(|e| e.tokens)).filter(|t| *t > 0.0).collect();
    let tokens_log = dctk_laws::plot::spans_decades(&tokens);
    let x_axis = || if tokens_log { Axis::log("training tokens") } else { Axis::linear("training tokens") };
    let y_axis = || if dctk_laws::plot::spans_decades(&val_log) { Axis::log("validation loss (nats/token)") } else { Axis::linear("validation loss (nats/token)") };
    page.plots_open();
    for dim in &dims {
        let col = colouring(&with_evals, *dim);
        let mut chart = Chart::new(
            match dim {
                Some(d) => format!("validation loss vs tokens, by {d}"),
                None => "validation loss vs tokens".into(),
            },
            x_axis(),
            y_axis(),
        );
        for (k, c) in with_evals.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c.evals.iter().map(|e| (e.tokens, e.val_loss)).collect();
            chart.push(line_for(c, pts, col.hues[k], col.labels[k].clone()));
        }
        let name = format!("val_loss_by_{}", dim.unwrap_or("cell"));
        page.figure(&name, chart.to_svg(), "One line per cell (dashed: not finished). Evaluations on held-out documents of every domain.");
    }
    page.plots_close();

    // Per-domain validation curves.
    let mut domains: Vec<String> = Vec::new();
    for c in &with_evals {
        for e in &c.evals {
            for d in e.by_domain.keys() {
                if !domains.contains(d) {
                    domains.push(d.clone());
                }
            }
        }
    }
    if domains.len() > 1 {
        page.h3("Validation loss by domain");
        page.plots_open();
        let col = colouring(&with_evals, dims[0]);
        for d in &domains {
            let mut chart = Chart::new(format!("{d}: validation loss vs tokens"), x_axis(), Axis::linear("validation loss (nats/token)"));
            chart.size = (480, 320);
            for (k, c) in with_evals.iter().enumerate() {
                let pts: Vec<(f64, f64)> = c.evals.iter().filter_map(|e| e.by_domain.get(d).map(|v| (e.tokens, *v))).collect();
                if !pts.is_empty() {
                    chart.push(line_for(c, pts, col.hues[k], None));
                }
            }
            page.figure(&format!("domain_{d}"), chart.to_svg(), &format!("Held-out {d} documents; colours as in the first chart above."));
        }
        page.plots_close();
    }

    let with_train: Vec<&CellView> = study.cells.iter().filter(|c| !c.train.is_empty()).collect();
    if !with_train.is_empty() {
        page.h3("Train loss and learning rate");
        page.plots_open();
        let col = colouring(&with_train, dims[0]);
        let mut loss = Chart::new("train loss vs step", Axis::linear("step"), Axis::linear("train loss (nats/token)"));
        let mut lr = Chart::new("learning rate vs step", Axis::linear("step"), Axis::linear("learning rate"));
        loss.size = (600, 360);
        lr.size = (600, 360);
        let lrs: Vec<f64> = with_train.iter().flat_map(|c| c.train.iter().map(|t| t.lr)).filter(|v| v.is_finite()).collect();
        if dctk_laws::plot::spans_decades(&lrs) {
            lr.y = Axis::log("learning rate");
        }
        for (k, c) in with_train.iter().enumerate() {
            loss.push(line_for(c, c.train.iter().map(|t| (t.step as f64, t.loss)).collect(), col.hues[k], col.labels[k].clone()));
            lr.push(line_for(c, c.train.iter().map(|t| (t.step as f64, t.lr)).collect(), col.hues[k], None));
        }
        page.figure("train_loss", loss.to_svg(), "Logged training loss (at most 200 points per cell).");
        page.figure("learning_rate", lr.to_svg(), "The schedule as run.");
        page.plots_close();
    }
}

fn status_class(s: &str) -> String {
    format!("s-{}", s.replace(' ', "-"))
}

fn summary(page: &mut Page, study: &StudyView) {
    page.section("study", "The study");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &study.cells {
        *counts.entry(c.status.as_str()).or_default() += 1;
    }
    let mut badges = String::new();
    for (s, n) in &counts {
        let _ = write!(badges, "<span class=\"badge {}\" data-status=\"{}\">{n} {}</span>", status_class(s), escape(s), escape(s));
    }
    let flops: f64 = study.cells.iter().filter_map(|c| c.flops()).sum();
    let wall: f64 = study.cells.iter().filter_map(|c| c.num("wall_s")).sum();
    let _ = writeln!(
        page.body,
        "<p>{} cell(s): {badges}</p><p class=\"note\">Training FLOPs of finished cells: <b>{}</b> · training wall time: <b>{}</b> · script <code>{}</code></p>",
        study.cells.len(),
        if flops > 0.0 { format!("{flops:.3e}") } else { "–".into() },
        crate::study::execute::progress::human_duration(std::time::Duration::from_secs_f64(wall.max(0.0))),
        escape(&study.script)
    );
    if let Some(v) = study.cells.iter().find_map(|c| c.manifest.get("versions").filter(|v| v.is_object())) {
        let parts: Vec<String> = v.as_object().unwrap().iter().map(|(k, v)| format!("{k} <code>{}</code>", escape(&v.to_string().trim_matches('"').to_string()))).collect();
        page.p(&format!("Versions: {}", parts.join(" · ")));
    }
    for n in &study.notes {
        let _ = writeln!(page.body, "<p class=\"warn\">{}</p>", escape(n));
    }
    // What changed since the run before.
    if let Some(ch) = &study.changes {
        let list = ch.get("changed").and_then(Value::as_array).cloned().unwrap_or_default();
        if ch.get("previous_run") == Some(&Value::Bool(false)) {
            page.p("The first run of this study: nothing earlier to compare with.");
        } else if list.is_empty() {
            page.p("No cell id changed since the run before the last one.");
        } else {
            page.h3("What changed since the run before");
            let rows: Vec<(Option<&str>, Vec<Cell>)> = list
                .iter()
                .map(|c| {
                    let changes: Vec<String> = c["changes"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
                    (
                        None,
                        vec![
                            Cell::Text(c["label"].as_str().unwrap_or("").into()),
                            Cell::Text(c["before"].as_str().unwrap_or("").into()),
                            Cell::Text(c["after"].as_str().unwrap_or("").into()),
                            Cell::Text(changes.join("; ")),
                        ],
                    )
                })
                .collect();
            page.table("changes.csv", &["cell".into(), "id before".into(), "id now".into(), "inputs that changed".into()], &rows);
        }
    }
    page.h3("Cells");
    let mut columns: Vec<String> = ["label", "id", "status"].iter().map(|s| s.to_string()).collect();
    columns.extend(study.varying.iter().cloned());
    columns.extend(["params", "unique_tokens", "epochs", "steps", "train_tokens", "FLOPs", "wall_s", "final_val_loss", "best_val_loss", "why"].iter().map(|s| s.to_string()));
    let rows: Vec<(Option<&str>, Vec<Cell>)> = study
        .cells
        .iter()
        .map(|c| {
            let mut row = vec![Cell::Text(c.label.clone()), Cell::Text(c.id.clone()), Cell::Text(c.status.clone())];
            for v in &study.varying {
                let s = c.settings.get(v).cloned().unwrap_or_default();
                row.push(match s.trim_matches('"').parse::<f64>() {
                    Ok(x) => Cell::Num(x),
                    Err(_) => Cell::Text(s.trim_matches('"').to_string()),
                });
            }
            for k in ["params", "unique_tokens", "epochs", "steps", "train_tokens"] {
                row.push(num_or_text(c.result.get(k).or_else(|| c.manifest.pointer(&format!("/spec/{k}")))));
            }
            row.push(c.flops().map_or(Cell::Text(String::new()), Cell::Num));
            row.push(num_or_text(c.result.get("wall_s")));
            row.push(num_or_text(c.result.get("final_val_loss")));
            row.push(num_or_text(c.result.get("best_val_loss")));
            let why = match c.status.as_str() {
                "diverged" => c.divergence().unwrap_or_else(|| "diverged".into()),
                "failed" => c.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("failed").to_string(),
                "not run" => "planned, not run yet".into(),
                "interrupted" => "interrupted; a rerun resumes it from its checkpoint".into(),
                _ => String::new(),
            };
            row.push(Cell::Text(why));
            let class = match c.status.as_str() {
                "failed" => Some("st-failed"),
                "diverged" => Some("st-diverged"),
                _ => None,
            };
            (class, row)
        })
        .collect();
    page.table("cells.csv", &columns, &rows);
}

fn chart_of(v: &Value) -> Option<Chart> {
    serde_json::from_value(v.get("chart")?.clone()).ok()
}

fn fits(page: &mut Page, study: &StudyView) {
    let fits: Vec<&Value> = study.analyses.iter().filter(|a| a["kind"] == "fit").collect();
    if fits.is_empty() {
        return;
    }
    page.section("fits", "Fits");
    for (k, f) in fits.iter().enumerate() {
        let r = &f["report"];
        let group = f.get("group").and_then(Value::as_str).map(|g| format!(" · group {g}")).unwrap_or_default();
        page.h3(&format!("{} (fit {} at {}{group})", r["law"].as_str().unwrap_or("?"), k + 1, f["at"].as_str().unwrap_or("?")));
        let _ = writeln!(
            page.body,
            "<p class=\"note\"><code>{}</code><br>{} · {} points · objective {} = {:.6e}</p>",
            escape(r["equation"].as_str().unwrap_or("")),
            escape(r["citation"].as_str().unwrap_or("")),
            r["n_points"],
            escape(r["objective"].as_str().unwrap_or("")),
            r["objective_value"].as_f64().unwrap_or(f64::NAN)
        );
        for w in r["warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(page.body, "<p class=\"warn\">{}</p>", escape(w["message"].as_str().unwrap_or("")));
        }
        page.plots_open();
        for c in f["charts"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("chart");
            if name == "iso_loss" || name == "epochs" {
                continue; // shown under the data-constrained views
            }
            if let Some(chart) = chart_of(c) {
                let caption = match name {
                    "fit" => "Dots: the fit's points. Lines: the law at the fitted parameters (dashed beyond the data: extrapolation); shaded: the bootstrap band. Open circles: predictions asked of the fit.",
                    "residuals" => "Residuals in the fit's space; a trend means the law misses a shape in the data.",
                    _ => "",
                };
                page.figure(&format!("fit{}_{name}", k + 1), chart.to_svg(), caption);
            }
        }
        page.plots_close();
        // Parameters with intervals and bounds.
        let rows: Vec<(Option<&str>, Vec<Cell>)> = r["params"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(r["derived"].as_array().into_iter().flatten())
            .map(|p| {
                let iv = &p["interval"];
                (
                    None,
                    vec![
                        Cell::Text(p["name"].as_str().unwrap_or("").into()),
                        num_or_text(p.get("value")),
                        num_or_text(iv.get("lower")),
                        num_or_text(iv.get("upper")),
                        num_or_text(iv.get("se")),
                        Cell::Text(if p["fixed"].as_bool() == Some(true) { "fixed".into() } else { String::new() }),
                        num_or_text(p.get("lower_bound")),
                        num_or_text(p.get("upper_bound")),
                    ],
                )
            })
            .collect();
        let level = r["bootstrap"]["level"].as_f64().map(|l| format!("{:.0}% ", l * 100.0)).unwrap_or_default();
        page.table(
            &format!("fit{}_params.csv", k + 1),
            &["parameter".into(), "value".into(), format!("{level}lower"), format!("{level}upper"), "se".into(), "".into(), "lower bound".into(), "upper bound".into()],
            &rows,
        );
        // Diagnostics: metrics, optima, identifiability.
        let mut diag: Vec<(Option<&str>, Vec<Cell>)> = Vec::new();
        if let Some(m) = r["metrics"].as_object() {
            for (k, v) in m {
                diag.push((None, vec![Cell::Text(k.clone()), num_or_text(Some(v))]));
            }
        }
        diag.push((None, vec![Cell::Text("starts (reached the best / run)".into()), Cell::Text(format!("{} / {}", r["n_converged"], r["n_starts"]))]));
        diag.push((None, vec![Cell::Text("distinct local optima".into()), num_or_text(r.get("n_optima"))]));
        if let Some(c) = r["identifiability"]["condition_number"].as_f64() {
            diag.push((None, vec![Cell::Text("condition number (scaled Jacobian)".into()), Cell::Num(c)]));
        }
        diag.push((None, vec![Cell::Text("optimiser status".into()), Cell::Text(r["diagnostics"]["status"].as_str().unwrap_or("").into())]));
        page.table(&format!("fit{}_diagnostics.csv", k + 1), &["diagnostic".into(), "value".into()], &diag);
        if let Some(preds) = f["predictions"].as_array().filter(|p| !p.is_empty()) {
            let mut cols: Vec<String> = preds[0].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            cols.retain(|c| c != "loss" && c != "lower" && c != "upper");
            let rows: Vec<(Option<&str>, Vec<Cell>)> = preds
                .iter()
                .map(|p| {
                    let mut row: Vec<Cell> = cols.iter().map(|c| num_or_text(p.get(c))).collect();
                    row.extend([num_or_text(p.get("loss")), num_or_text(p.get("lower")), num_or_text(p.get("upper"))]);
                    (None, row)
                })
                .collect();
            let mut header = cols.clone();
            header.extend(["predicted loss (extrapolation)".into(), "lower".into(), "upper".into()]);
            page.table(&format!("fit{}_predictions.csv", k + 1), &header, &rows);
        }
    }
}

fn data_constrained(page: &mut Page, study: &StudyView) {
    let fit_views: Vec<(usize, &Value)> = study
        .analyses
        .iter()
        .filter(|a| a["kind"] == "fit")
        .enumerate()
        .flat_map(|(k, f)| f["charts"].as_array().into_iter().flatten().filter(|c| c["name"] == "iso_loss" || c["name"] == "epochs").map(move |c| (k, c)))
        .collect();
    let efficiency: Vec<&Value> = study.analyses.iter().filter(|a| a["kind"] == "data_efficiency").collect();
    let vary_epochs = study.varying.iter().any(|v| v == "epochs") && study.cells.iter().any(|c| c.num("final_val_loss").is_some_and(f64::is_finite));
    if fit_views.is_empty() && efficiency.is_empty() && !vary_epochs {
        return;
    }
    page.section("data-constrained", "Data-constrained views");
    page.plots_open();
    if vary_epochs {
        // Final loss against epochs, one line per setting of everything else that varies.
        let mut groups: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for c in &study.cells {
            let (Some(e), Some(l)) = (c.num("epochs"), c.num("final_val_loss")) else { continue };
            if !l.is_finite() {
                continue;
            }
            let key = c
                .settings
                .iter()
                .filter(|(k, _)| k.as_str() != "epochs")
                .map(|(k, v)| format!("{k}={}", v.trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ");
            let key = if key.is_empty() { "all cells".to_string() } else { key };
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1.push((e, l)),
                None => groups.push((key, vec![(e, l)])),
            }
        }
        let mut chart = Chart::new("final validation loss vs epochs, at fixed unique tokens", Axis::log("epochs"), Axis::linear("final validation loss (nats/token)"));
        for (k, (key, mut pts)) in groups.into_iter().enumerate() {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = (k < 12).then(|| key.clone());
            chart.push(Mark::Line { points: pts.clone(), hue: Hue::Category(k), label, dashed: false });
            chart.push(Mark::Points { points: pts, hue: Hue::Category(k), label: None, marker: Marker::Dot });
        }
        page.figure("loss_vs_epochs", chart.to_svg(), "Each line: one model on one unique-token budget, trained for more epochs (repeated data).");
    }
    for (k, c) in &fit_views {
        if let Some(chart) = chart_of(c) {
            let name = c["name"].as_str().unwrap_or("");
            let caption = if name == "iso_loss" {
                "Iso-loss contours of the fitted law over model size and training tokens; the line is the compute-optimal frontier (least loss at each C = 6ND); dots: the runs."
            } else {
                "The fitted law's loss against epochs at each run's unique-token budget (shaded: bootstrap band; dashed: beyond the data); dots: the runs."
            };
            page.figure(&format!("fit{}_{name}", k + 1), chart.to_svg(), caption);
        }
    }
    if !efficiency.is_empty() {
        let mut chart = Chart::new("effective-data multiplier", Axis::linear("multiplier (D_equivalent / D)"), Axis::linear("method"));
        chart.size = (600, 120 + 40 * efficiency.len() as u32);
        for (k, e) in efficiency.iter().enumerate() {
            let y = (efficiency.len() - k) as f64;
            let m = e["multiplier"].as_f64().unwrap_or(f64::NAN);
            if let Some(iv) = e["interval"].as_array().filter(|a| a.len() == 2) {
                let (lo, hi) = (iv[0].as_f64().unwrap_or(m), iv[1].as_f64().unwrap_or(m));
                chart.push(Mark::Line { points: vec![(lo, y), (hi, y)], hue: Hue::Category(k), label: None, dashed: false });
            }
            chart.push(Mark::Points { points: vec![(m, y)], hue: Hue::Category(k), label: Some(e["at"].as_str().unwrap_or("method").into()), marker: Marker::Dot });
        }
        chart.push(Mark::Points { points: vec![(1.0, 0.5)], hue: Hue::Gray, label: Some("1× (no gain)".into()), marker: Marker::Cross });
        page.figure("data_efficiency", chart.to_svg(), "Effective-data multiplier of each method with its bootstrap interval.");
    }
    page.plots_close();
    if !efficiency.is_empty() {
        let rows: Vec<(Option<&str>, Vec<Cell>)> = efficiency
            .iter()
            .map(|e| {
                let iv = e["interval"].as_array();
                (
                    None,
                    vec![
                        Cell::Text(e["at"].as_str().unwrap_or("").into()),
                        num_or_text(e.get("multiplier")),
                        num_or_text(iv.and_then(|a| a.first())),
                        num_or_text(iv.and_then(|a| a.get(1))),
                        num_or_text(e.get("d_equivalent")),
                        num_or_text(e.get("d_method")),
                        num_or_text(e.get("loss_method")),
                    ],
                )
            })
            .collect();
        page.table(
            "data_efficiency.csv",
            &["at".into(), "multiplier".into(), "lower".into(), "upper".into(), "D_equivalent".into(), "D_method".into(), "loss_method".into()],
            &rows,
        );
    }
}

/// Served tokens by domain of a cell (its data accounting).
fn served(c: &CellView) -> Vec<(String, f64, bool)> {
    c.result["accounting"]["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| (d["name"].as_str().unwrap_or("?").to_string(), d["tokens_served"].as_f64().unwrap_or(0.0), d["kind"].as_str() != Some("Real")))
        .collect()
}

fn mixtures(page: &mut Page, study: &StudyView) {
    let optima: Vec<&Value> = study.analyses.iter().filter(|a| a["kind"] == "mixture_optimum").collect();
    let predictions: Vec<&Value> = study.analyses.iter().filter(|a| a["kind"] == "mixture_prediction").collect();
    let finished: Vec<&CellView> = study.cells.iter().filter(|c| c.result.is_object()).collect();
    // Each mixed cell's shares of its served tokens by domain, computed once.
    let (mixed, shares): (Vec<&CellView>, Vec<Vec<(String, f64)>>) = finished
        .iter()
        .filter_map(|c| {
            let s = served(c);
            let total: f64 = s.iter().map(|x| x.1).sum();
            (s.len() > 1).then(|| (*c, s.into_iter().map(|(n, t, _)| (n, if total > 0.0 { t / total } else { 0.0 })).collect()))
        })
        .unzip();
    let share = |p: &[(String, f64)], d: &str| p.iter().find(|x| x.0 == d).map_or(0.0, |x| x.1);
    // A mixture study: some domain's share differs by two points or more between cells
    // (documents' boundaries alone move shares by less).
    let varies = shares.first().is_some_and(|first| {
        first.iter().any(|(d, _)| {
            let (lo, hi) = shares.iter().map(|p| share(p, d)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            hi - lo >= 0.02
        })
    });
    let synthetic = finished.iter().any(|c| c.num("synthetic_tokens_seen").is_some_and(|v| v > 0.0));
    if optima.is_empty() && predictions.is_empty() && !varies && !synthetic {
        return;
    }
    page.section("mixtures", "Mixtures and synthetic data");
    page.plots_open();
    if varies && mixed.len() <= 40 {
        let mut domains: Vec<String> = Vec::new();
        for (d, _) in shares.iter().flatten() {
            if !domains.contains(d) {
                domains.push(d.clone());
            }
        }
        let series: Vec<(String, Vec<f64>)> = domains.iter().map(|d| (d.clone(), shares.iter().map(|p| share(p, d)).collect())).collect();
        // One group per cell, one bar per domain.
        let bars = BarChart {
            title: "served proportions by cell".into(),
            value_label: "share of training tokens".into(),
            categories: mixed.iter().map(|c| c.label.clone()).collect(),
            series,
            size: (760, 0),
            stacked: true,
        };
        page.figure("proportions", bars.to_svg(), "The share of each domain in the tokens each cell trained on (its data accounting).");
        let with_losses: Vec<&CellView> = mixed.iter().copied().filter(|c| c.result["final_val_loss_by_domain"].is_object()).collect();
        if !with_losses.is_empty() && with_losses.len() <= 12 {
            let series: Vec<(String, Vec<f64>)> = with_losses
                .iter()
                .map(|c| (c.label.clone(), domains.iter().map(|d| c.result["final_val_loss_by_domain"][d].as_f64().unwrap_or(f64::NAN)).collect()))
                .collect();
            let bars = BarChart { title: "final validation loss by domain".into(), value_label: "validation loss (nats/token)".into(), categories: domains.clone(), series, size: (760, 0), stacked: false };
            page.figure("domain_losses", bars.to_svg(), "Per-domain held-out loss at the end of training, one bar per cell.");
        }
    }
    if synthetic {
        let cells: Vec<&CellView> = finished.iter().copied().take(40).collect();
        let bars = BarChart {
            title: "real vs synthetic tokens trained on".into(),
            value_label: "tokens".into(),
            categories: cells.iter().map(|c| c.label.clone()).collect(),
            series: vec![
                ("real".into(), cells.iter().map(|c| c.num("real_tokens_seen").unwrap_or(0.0)).collect()),
                ("synthetic".into(), cells.iter().map(|c| c.num("synthetic_tokens_seen").unwrap_or(0.0)).collect()),
            ],
            size: (760, 0),
            stacked: true,
        };
        page.figure("real_vs_synthetic", bars.to_svg(), "Tokens served from real and from synthetic domains, per cell.");
    }
    for (k, o) in optima.iter().enumerate() {
        let Some(p) = o["proportions"].as_object() else { continue };
        let mut series = vec![("optimum".to_string(), p.values().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect::<Vec<f64>>())];
        if let Some(e) = o["epochs"].as_object() {
            let max = e.values().filter_map(Value::as_f64).fold(0.0, f64::max);
            if max > 0.0 {
                series.push((format!("epochs / {}", tick_label(max)), p.keys().map(|d| e.get(d).and_then(Value::as_f64).unwrap_or(0.0) / max).collect()));
            }
        }
        let iv = o["interval"].as_object().map(|iv| format!(" [{:.4}, {:.4}]", iv.get("lower").and_then(Value::as_f64).unwrap_or(f64::NAN), iv.get("upper").and_then(Value::as_f64).unwrap_or(f64::NAN))).unwrap_or_default();
        let bars = BarChart {
            title: format!("optimised mixture {} (predicted loss {:.4}{iv})", k + 1, o["predicted_loss"].as_f64().unwrap_or(f64::NAN)),
            value_label: "proportion".into(),
            categories: p.keys().cloned().collect(),
            series,
            size: (760, 0),
            stacked: false,
        };
        page.figure(&format!("mixture_optimum_{}", k + 1), bars.to_svg(), &format!("optimize_mixture at {}: proportions (and epochs of each domain, scaled) of the predicted optimum.", o["at"].as_str().unwrap_or("?")));
    }
    for (k, p) in predictions.iter().enumerate() {
        let rows = p["runs"].as_array().cloned().unwrap_or_default();
        let pts: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((r["measured"].as_f64()?, r["predicted"].as_f64()?))).collect();
        if pts.is_empty() {
            continue;
        }
        let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0.min(p.1)), b.max(p.0.max(p.1))));
        let chart = Chart::new(format!("held-out mixtures {}: predicted vs measured", k + 1), Axis::linear("measured total loss"), Axis::linear("predicted total loss"))
            .with(Mark::Line { points: vec![(lo, lo), (hi, hi)], hue: Hue::Gray, label: Some("y = x".into()), dashed: true })
            .with(Mark::Points { points: pts, hue: Hue::Category(0), label: Some("held-out runs".into()), marker: Marker::Ring });
        page.figure(&format!("mixture_prediction_{}", k + 1), chart.to_svg(), "Each point a run left out of the fit: its measured loss and the law's prediction.");
    }
    page.plots_close();
    for (k, o) in optima.iter().enumerate() {
        let Some(p) = o["proportions"].as_object() else { continue };
        let rows: Vec<(Option<&str>, Vec<Cell>)> = p
            .iter()
            .map(|(d, r)| (None, vec![Cell::Text(d.clone()), num_or_text(Some(r)), num_or_text(o["losses"].get(d)), num_or_text(o["epochs"].get(d))]))
            .collect();
        page.table(&format!("mixture_optimum_{}.csv", k + 1), &["domain".into(), "proportion".into(), "predicted loss".into(), "epochs".into()], &rows);
    }
}

fn results_and_output(page: &mut Page, study: &StudyView) {
    if let Some(csv) = &study.results_csv {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv.as_bytes());
        let header: Vec<String> = reader.headers().map(|h| h.iter().map(String::from).collect()).unwrap_or_default();
        let rows: Vec<(Option<&str>, Vec<Cell>)> = reader
            .records()
            .map_while(Result::ok)
            .map(|r| {
                let cells = r
                    .iter()
                    .map(|v| match v.parse::<f64>() {
                        Ok(x) if !v.is_empty() => Cell::Num(x),
                        _ => Cell::Text(v.to_string()),
                    })
                    .collect();
                (None, cells)
            })
            .collect();
        if !header.is_empty() {
            page.section("results", "Results table");
            page.p("<code>results.csv</code> of the last complete run (floats in shortest round-trip form).");
            page.table("results.csv", &header, &rows);
        }
    }
    if let Some(out) = study.output.as_ref().filter(|o| !o.trim().is_empty()) {
        page.section("output", "What the script printed");
        let _ = writeln!(page.body, "<pre>{}</pre>", escape(out));
    }
}

/// The report of `study` as one HTML document.
pub fn render(study: &StudyView, title: &str) -> String {
    let mut page = Page { body: String::new(), tables: 0, plots: 0, toc: Vec::new() };
    summary(&mut page, study);
    curves(&mut page, study);
    fits(&mut page, study);
    data_constrained(&mut page, study);
    mixtures(&mut page, study);
    results_and_output(&mut page, study);
    page.body.push_str("</section>\n");
    let nav: String = page.toc.iter().map(|(id, t)| format!("<a href=\"#{id}\">{}</a>", escape(t))).collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body data-plots=\"{plots}\" data-tables=\"{tables}\">\
         <header><h1>{t}</h1><p>dctk {ver} · study <code>{script}</code> · {cells} cell(s) · drawn from the study's files alone</p></header>\
         <nav>{nav}</nav><main>\n{body}</main><script>{SCRIPT}</script></body></html>\n",
        t = escape(title),
        plots = page.plots,
        tables = page.tables,
        ver = env!("CARGO_PKG_VERSION"),
        script = escape(&study.script),
        cells = study.cells.len(),
        body = page.body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::collect::{Eval, TrainPoint};
    use indexmap::IndexMap;
    use serde_json::json;

    fn cell(label: &str, shares: [f64; 2], synthetic: f64, status: &str) -> CellView {
        let domains = json!([
            {"name": "code", "kind": "Real", "tokens_served": 1000.0 * shares[0]},
            {"name": "math", "kind": "Real", "tokens_served": 1000.0 * shares[1]},
        ]);
        CellView {
            label: label.into(),
            id: format!("{label}-id"),
            status: status.into(),
            settings: IndexMap::from([("mix".to_string(), format!("\"{label}\""))]),
            manifest: json!({"versions": {"dctk": "0.1.0"}}),
            result: json!({"final_val_loss": 6.0, "final_val_loss_by_domain": {"code": 5.0, "math": 7.0}, "accounting": {"domains": domains},
                           "synthetic_tokens_seen": synthetic, "real_tokens_seen": 1000.0, "params": 1e6, "train_tokens": 1000.0, "flops_per_token": 6e6}),
            error: (status == "failed").then(|| "it broke\nsecond line".to_string()),
            evals: vec![
                Eval { step: 1, tokens: 100.0, epoch: 0.5, val_loss: 8.0, by_domain: IndexMap::from([("code".into(), 7.5), ("math".into(), 8.5)]) },
                Eval { step: 2, tokens: 200.0, epoch: 1.0, val_loss: 7.0, by_domain: IndexMap::from([("code".into(), 6.5), ("math".into(), 7.5)]) },
            ],
            train: vec![TrainPoint { step: 1, loss: 9.0, lr: 1e-3 }, TrainPoint { step: 2, loss: 8.0, lr: 5e-4 }],
        }
    }

    #[test]
    fn every_section_of_a_study_with_mixtures_synthetic_data_and_analyses_is_drawn() {
        let study = StudyView {
            name: "s".into(),
            script: "s.rhai".into(),
            record_dir: "runs/studies/s".into(),
            cells: vec![cell("a", [0.5, 0.5], 0.0, "done"), cell("b", [0.8, 0.2], 500.0, "done"), cell("c", [0.3, 0.7], 0.0, "failed")],
            varying: vec!["mix".into()],
            results_csv: Some("label,id,final_val_loss\na,a-id,6.0\n".into()),
            analyses: vec![
                json!({"kind": "data_efficiency", "at": "s.rhai:9", "multiplier": 1.4, "interval": [1.1, 1.9], "d_equivalent": 1400.0, "d_method": 1000.0, "loss_method": 6.0}),
                json!({"kind": "mixture_optimum", "at": "s.rhai:12", "proportions": {"code": 0.6, "math": 0.4}, "losses": {"code": 5.0, "math": 7.0},
                       "epochs": {"code": 3.0, "math": 8.0}, "predicted_loss": 6.1, "interval": {"lower": 6.0, "upper": 6.3}}),
                json!({"kind": "mixture_prediction", "at": "s.rhai:14", "runs": [{"run": "a", "measured": 6.0, "predicted": 6.1}, {"run": "b", "measured": 6.2, "predicted": 6.15}]}),
            ],
            changes: Some(json!({"previous_run": true, "changed": [{"label": "b", "before": "1", "after": "2", "changes": ["spec.lr: 0.001 → 0.002"]}]})),
            output: Some("hello <world>\n".into()),
            notes: vec![],
        };
        let html = render(&study, "t & <t>");
        assert!(html.contains("<title>t &amp; &lt;t&gt;</title>") && html.contains("hello &lt;world&gt;"));
        for plot in ["val_loss_by_mix", "domain_code", "domain_math", "train_loss", "learning_rate", "data_efficiency", "proportions", "domain_losses", "real_vs_synthetic", "mixture_optimum_1", "mixture_prediction_1"] {
            assert!(html.contains(&format!("data-plot=\"{plot}\"")), "plot {plot} missing");
        }
        assert_eq!(html.matches("<figure class=\"plot\"").count(), html.matches("<svg").count());
        for section in ["study", "curves", "data-constrained", "mixtures", "results", "output"] {
            assert!(html.contains(&format!("data-section=\"{section}\"")), "section {section} missing");
        }
        assert!(html.contains("spec.lr: 0.001 → 0.002"), "what changed");
        assert!(html.contains("<tr class=\"st-failed\">") && html.contains("it broke") && !html.contains("second line"));
        // Every table has its CSV button naming the table.
        assert_eq!(html.matches("<table class=\"sortable\"").count(), html.matches("<button class=\"csv\"").count());
    }

    #[test]
    fn an_empty_study_is_a_page_not_an_error() {
        let study = StudyView {
            name: "e".into(),
            script: "e.rhai".into(),
            record_dir: "x".into(),
            cells: vec![],
            varying: vec![],
            results_csv: None,
            analyses: vec![],
            changes: None,
            output: None,
            notes: vec!["x/analyses.json: unreadable".into()],
        };
        let html = render(&study, "e");
        assert!(html.contains("data-section=\"study\"") && html.contains("0 cell(s)") && html.contains("unreadable"));
        assert!(!html.contains("data-section=\"curves\""));
    }
}
