//! The built-in law forms and the registry that finds them by name. Each law
//! lives in its own module with its equation and paper in the docs.

pub mod bimix;
pub mod bimix_dc;
pub mod chinchilla;
pub mod expr;
pub mod kaplan;
pub mod mixing;
pub mod muennighoff;
pub mod power;

use crate::error::{LawError, Result};
use crate::law::LawForm;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use bimix::BiMix;
pub use bimix_dc::BiMixDataConstrained;
pub use chinchilla::Chinchilla;
pub use expr::ExprLaw;
pub use kaplan::Kaplan;
pub use mixing::MixingLaw;
pub use muennighoff::Muennighoff;
pub use power::PowerLaw;

/// Names accepted by [`builtin`].
pub const BUILTIN_LAWS: &[&str] = &["chinchilla", "kaplan", "muennighoff", "bimix", "bimix_dc", "mixing_law", "power_law"];

/// Options some built-in laws take.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LawOptions {
    /// Muennighoff: tie α = β.
    #[serde(default)]
    pub tie_exponents: bool,
    /// mixing_law: the proportion input columns (default `r1..rM` when
    /// `domains` is given).
    #[serde(default)]
    pub mixture_columns: Option<Vec<String>>,
    /// mixing_law: number of proportion columns `r1..rM`.
    #[serde(default)]
    pub domains: Option<usize>,
}

/// A built-in law by registry name.
pub fn builtin(name: &str, opts: &LawOptions) -> Result<Arc<dyn LawForm>> {
    Ok(match name {
        "chinchilla" => Arc::new(Chinchilla),
        "kaplan" => Arc::new(Kaplan),
        "muennighoff" => Arc::new(Muennighoff { tie_exponents: opts.tie_exponents }),
        "bimix" => Arc::new(BiMix),
        "bimix_dc" => Arc::new(BiMixDataConstrained),
        "power_law" => Arc::new(PowerLaw),
        "mixing_law" => match (&opts.mixture_columns, opts.domains) {
            (Some(cols), _) if !cols.is_empty() => Arc::new(MixingLaw::with_inputs(cols.clone())),
            (_, Some(m)) if m > 0 => Arc::new(MixingLaw::new(m)),
            _ => {
                return Err(LawError::BadOption(
                    "mixing_law needs `domains` (number of proportion columns r1..rM) or `mixture_columns`".into(),
                ))
            }
        },
        _ => return Err(LawError::UnknownLaw { name: name.into(), available: BUILTIN_LAWS.join(", ") }),
    })
}

/// Turn ln-space predictions and Jacobian into linear ones in place:
/// L̂ = e^{ln L̂}, ∂L̂ = L̂ · ∂ln L̂.
pub(crate) fn log_to_linear(pred: &mut [f64], jac: &mut [f64], n_params: usize) {
    for v in pred.iter_mut() {
        *v = v.exp();
    }
    for col in jac.chunks_exact_mut(pred.len()).take(n_params) {
        for (j, v) in col.iter_mut().zip(pred.iter()) {
            *j *= *v;
        }
    }
}
