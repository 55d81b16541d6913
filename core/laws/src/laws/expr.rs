//! User-defined laws written as one Rhai expression, so a new law form (one
//! whose exact equation becomes known after release) can be fitted from a
//! study script or the CLI without compiling anything.
//!
//! The expression is compiled once; each prediction evaluates it per point
//! with the parameters and inputs bound as variables. Gradients come from the
//! trait's central finite differences (an interpreter cannot give more).

use crate::error::{LawError, Result};
use crate::law::{cartesian_grid, Inputs, LawForm, Objective, ParamSpec};

/// A law from `(parameters with bounds, input names, formula)`, e.g.
/// params `A, B, C`, inputs `x`, formula `A / x ** B + C`.
pub struct ExprLaw {
    name: String,
    formula: String,
    params: Vec<ParamSpec>,
    inputs: Vec<String>,
    grid: Option<Vec<Vec<f64>>>,
    objective: Objective,
    positive_inputs: bool,
    engine: rhai::Engine,
    ast: rhai::AST,
}

fn valid_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl std::fmt::Debug for ExprLaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExprLaw").field("name", &self.name).field("formula", &self.formula).field("params", &self.params).field("inputs", &self.inputs).finish_non_exhaustive()
    }
}

impl ExprLaw {
    /// Compile and check a script law. Errors name the bad parameter, input
    /// or the expression problem (syntax, unknown variable, non-numeric result).
    pub fn new(name: &str, params: Vec<ParamSpec>, inputs: Vec<String>, formula: &str) -> Result<ExprLaw> {
        let mut seen = std::collections::HashSet::new();
        for n in params.iter().map(|p| &p.name).chain(inputs.iter()) {
            if !valid_ident(n) {
                return Err(LawError::BadParam { name: n.clone(), message: "not a valid identifier".into() });
            }
            if !seen.insert(n.clone()) {
                return Err(LawError::BadParam { name: n.clone(), message: "name used twice (parameters and inputs must differ)".into() });
            }
        }
        for p in &params {
            if p.lower.is_nan() || p.upper.is_nan() || p.lower > p.upper {
                return Err(LawError::BadParam {
                    name: p.name.clone(),
                    message: format!("bounds [{}, {}] are not an interval", p.lower, p.upper),
                });
            }
        }
        if params.is_empty() {
            return Err(LawError::Expr("a law needs at least one parameter".into()));
        }
        if inputs.is_empty() {
            return Err(LawError::Expr("a law needs at least one input column".into()));
        }
        let engine = rhai::Engine::new();
        let ast = engine
            .compile_expression(formula)
            .map_err(|e| LawError::Expr(format!("cannot compile '{formula}': {e}")))?;
        let law = ExprLaw {
            name: name.into(),
            formula: formula.into(),
            params,
            inputs,
            grid: None,
            objective: Objective::HUBER_LOG,
            positive_inputs: true,
            engine,
            ast,
        };
        // Evaluate once at a representative point so unknown variables and
        // non-numeric results are reported now, not as NaNs mid-fit.
        let probe: Vec<f64> = law.params.iter().map(mid_point).collect();
        let ones = vec![1.0; law.inputs.len()];
        law.eval_point(&probe, &ones).map_err(LawError::Expr)?;
        Ok(law)
    }

    /// Use this grid of starts instead of the bound-derived default.
    pub fn with_grid(mut self, grid: Vec<Vec<f64>>) -> Result<ExprLaw> {
        for (k, g) in grid.iter().enumerate() {
            if g.len() != self.params.len() {
                return Err(LawError::BadOption(format!(
                    "grid start {} has {} values, law '{}' has {} parameters",
                    k + 1,
                    g.len(),
                    self.name,
                    self.params.len()
                )));
            }
        }
        self.grid = Some(grid);
        Ok(self)
    }

    /// Fit with this objective by default.
    pub fn with_objective(mut self, objective: Objective) -> ExprLaw {
        self.objective = objective;
        self
    }

    /// Whether inputs must be > 0 (default true).
    pub fn with_positive_inputs(mut self, positive: bool) -> ExprLaw {
        self.positive_inputs = positive;
        self
    }

    fn eval_point(&self, params: &[f64], x: &[f64]) -> std::result::Result<f64, String> {
        let mut scope = rhai::Scope::new();
        for (p, v) in self.params.iter().zip(params) {
            scope.push(p.name.as_str(), *v);
        }
        for (n, v) in self.inputs.iter().zip(x) {
            scope.push(n.as_str(), *v);
        }
        self.eval_in(&mut scope)
    }

    fn eval_in(&self, scope: &mut rhai::Scope) -> std::result::Result<f64, String> {
        let v = self
            .engine
            .eval_ast_with_scope::<rhai::Dynamic>(scope, &self.ast)
            .map_err(|e| format!("evaluating '{}': {e}", self.formula))?;
        v.as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|t| format!("'{}' gives a {t}, not a number", self.formula))
    }
}

/// A representative value inside a parameter's bounds.
fn mid_point(p: &ParamSpec) -> f64 {
    match (p.lower.is_finite(), p.upper.is_finite()) {
        (true, true) => 0.5 * (p.lower + p.upper),
        (true, false) => p.lower + 1.0,
        (false, true) => p.upper - 1.0,
        (false, false) => 0.5,
    }
}

/// Starting values along one parameter, from its bounds.
fn axis(p: &ParamSpec, k: usize) -> Vec<f64> {
    let fr: &[f64] = if k == 3 { &[0.25, 0.5, 0.75] } else { &[0.3, 0.7] };
    match (p.lower.is_finite(), p.upper.is_finite()) {
        (true, true) => fr.iter().map(|f| p.lower + f * (p.upper - p.lower)).collect(),
        (true, false) => if k == 3 { vec![p.lower + 0.1, p.lower + 1.0, p.lower + 10.0] } else { vec![p.lower + 0.1, p.lower + 1.0] },
        (false, true) => if k == 3 { vec![p.upper - 10.0, p.upper - 1.0, p.upper - 0.1] } else { vec![p.upper - 1.0, p.upper - 0.1] },
        (false, false) => if k == 3 { vec![-1.0, 0.5, 2.0] } else { vec![0.5, 2.0] },
    }
}

impl LawForm for ExprLaw {
    fn name(&self) -> &str {
        &self.name
    }
    fn equation(&self) -> String {
        format!("L = {}", self.formula)
    }
    fn citation(&self) -> String {
        "user-defined (Rhai expression)".into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        self.params.clone()
    }
    fn inputs(&self) -> Vec<String> {
        self.inputs.clone()
    }
    fn input_must_be_positive(&self, _k: usize) -> bool {
        self.positive_inputs
    }
    fn default_objective(&self) -> Objective {
        self.objective
    }
    /// The user's grid, or 3 values per parameter inside its bounds (2 when
    /// there are more than 5 parameters, to keep the start count sane).
    fn default_grid(&self, _inputs: &Inputs, _loss: &[f64]) -> Vec<Vec<f64>> {
        if let Some(g) = &self.grid {
            return g.clone();
        }
        let k = if self.params.len() <= 5 { 3 } else { 2 };
        cartesian_grid(&self.params.iter().map(|p| axis(p, k)).collect::<Vec<_>>())
    }
    fn predict_into(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let mut scope = rhai::Scope::new();
        for (p, v) in self.params.iter().zip(params) {
            scope.push(p.name.as_str(), *v);
        }
        for n in &self.inputs {
            scope.push(n.as_str(), 0.0_f64);
        }
        for (i, o) in out.iter_mut().enumerate() {
            for (k, n) in self.inputs.iter().enumerate() {
                scope.set_value(n.as_str(), inputs.col(k)[i]);
            }
            // A failing evaluation becomes NaN: the fitter treats a
            // non-finite objective as "step too far" and backs off.
            *o = self.eval_in(&mut scope).unwrap_or(f64::NAN);
        }
    }
}
