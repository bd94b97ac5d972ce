//! Saving and resuming the complete state of a pruning run as JSON.

use std::io::Write;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Counters, Pruner, PrunerSettings};
use crate::error::{Error, Result};
use crate::estimator::GradientEstimator;
use crate::optim::OptimizerState;
use crate::oracle::ForwardOracle;
use crate::policy::MaskPolicy;

/// Version of the checkpoint layout; bump it when a field changes meaning.
const CHECKPOINT_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Checkpoint<PS, ES> {
    format: u32,
    num_units: usize,
    settings: PrunerSettings,
    counters: Counters,
    rng: ChaCha8Rng,
    policy: PS,
    estimator: ES,
    optimizer: OptimizerState,
}

impl<P: MaskPolicy, O: ForwardOracle, E: GradientEstimator> Pruner<P, O, E> {
    /// Writes the complete run state to `path` atomically: to a temporary
    /// file in the same folder, then renamed over `path`.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let checkpoint = Checkpoint {
            format: CHECKPOINT_FORMAT,
            num_units: self.policy.num_units(),
            settings: self.settings.clone(),
            counters: self.counters,
            rng: self.rng.clone(),
            policy: self.policy.state()?,
            estimator: self.estimator.state(),
            optimizer: self.optimizer.state()?,
        };
        let json = serde_json::to_vec(&checkpoint).map_err(|source| Error::Json {
            context: format!("checkpoint for {}", path.display()),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&json)?;
            file.sync_all()
        };
        write().map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))?;
        tracing::info!(path = %path.display(), step = self.counters.steps, "checkpoint saved");
        Ok(())
    }

    /// Replaces this pruner's state with the one saved at `path`.
    ///
    /// Returns [`Error::Checkpoint`] if the checkpoint was written by another
    /// format, for another number of units or with other settings. Build the
    /// pruner exactly as for the original run, then call this. NOTE: if the
    /// policy, estimator or optimiser rejects its part, the parts before it
    /// are already replaced, so discard the pruner after an error.
    pub fn resume_from(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let checkpoint: Checkpoint<P::State, E::State> =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                context: format!("checkpoint {}", path.display()),
                source,
            })?;
        self.check_matches(&checkpoint)
            .map_err(|reason| Error::Checkpoint {
                path: path.to_path_buf(),
                reason,
            })?;

        self.policy.restore(checkpoint.policy)?;
        self.estimator.restore(checkpoint.estimator)?;
        self.optimizer
            .restore(checkpoint.optimizer, checkpoint.num_units)?;
        self.rng = checkpoint.rng;
        self.counters = checkpoint.counters;
        tracing::info!(path = %path.display(), step = self.counters.steps, "resumed from checkpoint");
        Ok(())
    }

    /// Returns why `checkpoint` cannot resume this run, if it cannot.
    fn check_matches(
        &self,
        checkpoint: &Checkpoint<P::State, E::State>,
    ) -> std::result::Result<(), String> {
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "format {} where this build reads format {CHECKPOINT_FORMAT}",
                checkpoint.format
            ));
        }
        if checkpoint.num_units != self.policy.num_units() {
            return Err(format!(
                "saved for {} units, this run has {}",
                checkpoint.num_units,
                self.policy.num_units()
            ));
        }
        if checkpoint.settings != self.settings {
            return Err(format!(
                "saved with settings {:?}, this run has {:?}",
                checkpoint.settings, self.settings
            ));
        }
        Ok(())
    }
}
