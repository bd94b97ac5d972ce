//! Prunable units, the groups they come in, and the budgets over them.
//!
//! Vocabulary used throughout the crate:
//! - a *unit* is one thing that can be removed: one KV group of attention
//!   heads, one MLP intermediate channel, or one whole block;
//! - a *mask* assigns 1.0 (keep) or 0.0 (remove) to every unit. Sampled masks
//!   are `f32` tensors of shape `[K, num_units]`, a final mask has shape
//!   `[num_units]`; unit `i` of group `g` sits at column `g.offset + i`;
//! - a *keep probability* `s_i` is the Bernoulli parameter of unit `i`;
//! - the *keep ratio* `rho` is the fraction of a budget that may be kept, and
//!   *sparsity* is `1 - rho`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Kind of a prunable unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// One KV group: a key/value head and the query heads that share it.
    Head,
    /// One MLP intermediate channel.
    Channel,
    /// A whole attention block of one layer.
    AttentionBlock,
    /// A whole MLP block of one layer.
    MlpBlock,
}

impl UnitKind {
    /// Every kind, in the order groups of one layer are laid out.
    pub const ALL: [UnitKind; 4] = [
        UnitKind::Head,
        UnitKind::Channel,
        UnitKind::AttentionBlock,
        UnitKind::MlpBlock,
    ];

    /// Short name used in group and budget names.
    pub fn name(self) -> &'static str {
        match self {
            UnitKind::Head => "heads",
            UnitKind::Channel => "channels",
            UnitKind::AttentionBlock => "attention block",
            UnitKind::MlpBlock => "mlp block",
        }
    }
}

/// A contiguous run of units of one kind in one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitGroup {
    /// Human-readable name, for example `layer 3 heads`.
    pub name: String,
    pub kind: UnitKind,
    pub layer: usize,
    /// Column of the group's first unit in a mask.
    pub offset: usize,
    /// Number of units in the group.
    pub len: usize,
    /// Parameters removed with each unit of the group.
    pub cost: u64,
}

/// The full set of prunable units of a model (or of any oracle).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitSpace {
    groups: Vec<UnitGroup>,
    num_units: usize,
}

impl UnitSpace {
    /// Creates an empty unit space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a group of `len` units and returns its index.
    pub fn push(&mut self, kind: UnitKind, layer: usize, len: usize, cost: u64) -> usize {
        let name = format!("layer {layer} {}", kind.name());
        self.groups.push(UnitGroup {
            name,
            kind,
            layer,
            offset: self.num_units,
            len,
            cost,
        });
        self.num_units += len;
        self.groups.len() - 1
    }

    pub fn groups(&self) -> &[UnitGroup] {
        &self.groups
    }

    pub fn num_units(&self) -> usize {
        self.num_units
    }

    /// Finds the group of `kind` in `layer`, if the space has one.
    pub fn group(&self, kind: UnitKind, layer: usize) -> Option<&UnitGroup> {
        self.groups
            .iter()
            .find(|g| g.kind == kind && g.layer == layer)
    }

    /// Returns the unit kinds present in the space, in [`UnitKind::ALL`] order.
    pub fn kinds(&self) -> Vec<UnitKind> {
        UnitKind::ALL
            .into_iter()
            .filter(|k| self.groups.iter().any(|g| g.kind == *k && g.len > 0))
            .collect()
    }

    /// Parameter cost of every unit, in mask column order.
    pub fn unit_costs(&self) -> Vec<f64> {
        let mut costs = Vec::with_capacity(self.num_units);
        for g in &self.groups {
            costs.extend(std::iter::repeat_n(g.cost as f64, g.len));
        }
        costs
    }

    /// Builds the budgets that keep a fraction `keep_ratio` of the units.
    ///
    /// NOTE: budgets count units independently. When block units share the
    /// space with heads or channels, a removed block also removes the units
    /// inside it, which the budget still counts as kept.
    ///
    /// Returns an error if `keep_ratio` is not in [0, 1] or the space is empty.
    pub fn budgets(&self, kind: BudgetKind, keep_ratio: f64) -> Result<Vec<Budget>> {
        if !(0.0..=1.0).contains(&keep_ratio) {
            return Err(Error::invalid(
                "keep ratio",
                keep_ratio,
                "must be in [0, 1] (sparsity = 1 - keep ratio)",
            ));
        }
        if self.num_units == 0 {
            return Err(Error::invalid(
                "unit space",
                "empty",
                "select at least one granularity with prunable units",
            ));
        }
        let budgets = match kind {
            BudgetKind::PerKind => self
                .kinds()
                .into_iter()
                .map(|k| self.budget_over(k.name(), |g| g.kind == k, None, keep_ratio))
                .collect(),
            BudgetKind::Global => {
                let costs = self.unit_costs();
                vec![self.budget_over("all units by parameters", |_| true, Some(costs), keep_ratio)]
            }
        };
        Ok(budgets)
    }

    fn budget_over(
        &self,
        name: &str,
        select: impl Fn(&UnitGroup) -> bool,
        all_weights: Option<Vec<f64>>,
        keep_ratio: f64,
    ) -> Budget {
        let mut units = Vec::new();
        for g in self.groups.iter().filter(|g| select(g)) {
            units.extend((g.offset..g.offset + g.len).map(|i| i as i64));
        }
        let weights = all_weights.map(|w| units.iter().map(|&i| w[i as usize]).collect::<Vec<_>>());
        let total: f64 = match &weights {
            Some(w) => w.iter().sum(),
            None => units.len() as f64,
        };
        Budget {
            name: name.to_string(),
            units,
            weights,
            capacity: keep_ratio * total,
        }
    }
}

/// Layout of the budgets over unit kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// One budget per unit kind over all layers, each counting units (the
    /// reference's choice): every kind is pruned at exactly the sparsity.
    PerKind,
    /// One budget over every unit, weighted by parameter count, so that heads,
    /// channels and blocks trade against each other.
    Global,
}

/// A constraint `sum_i w_i s_i <= capacity` over a set of units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub name: String,
    /// Mask columns the budget covers, ascending.
    pub units: Vec<i64>,
    /// Per-unit weights aligned with `units`; `None` means every weight is 1.
    pub weights: Option<Vec<f64>>,
    /// Right-hand side of the constraint, in the units of the weights.
    pub capacity: f64,
}
