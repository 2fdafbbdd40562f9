//! The cap on distinct panels (`MAX_PANELS`). On a broker strangers can reach, a flood of
//! made-up panel ids would otherwise become a flood of InfluxDB series (each id is a tag value),
//! which is what slows and eventually breaks a time-series database.

use std::collections::HashSet;

use energy_core::{PanelId, Rejection};
use energy_influx::InfluxClient;
use energy_rollup::queries;

pub struct PanelRegistry {
    known: HashSet<PanelId>,
    max: usize,
}

impl PanelRegistry {
    pub fn new(known: impl IntoIterator<Item = PanelId>, max: usize) -> Self {
        Self {
            known: known.into_iter().collect(),
            max,
        }
    }

    /// Starts from the panels InfluxDB already holds, so the cap survives restarts. If
    /// InfluxDB cannot be asked now, it starts empty (and so admits up to the cap again).
    pub async fn load(influx: &InfluxClient, max: usize) -> Self {
        let statement = queries::known_panels();
        let known: Vec<PanelId> = match influx.query(&statement).await {
            Ok(results) => results
                .iter()
                .flat_map(queries::parse_known_panels)
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "could not read the known panels from InfluxDB; the panel cap starts from zero");
                Vec::new()
            }
        };
        tracing::info!(known = known.len(), max, "panel cap");
        Self::new(known, max)
    }

    /// Admits a panel that is known, or new while there is room.
    pub fn admit(&mut self, panel: &PanelId) -> Result<(), Rejection> {
        if self.known.contains(panel) {
            return Ok(());
        }
        if self.known.len() >= self.max {
            return Err(Rejection::TooManyPanels {
                panel: panel.to_string(),
                max: self.max,
            });
        }
        self.known.insert(panel.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PanelId {
        PanelId::parse(s).unwrap()
    }

    #[test]
    fn new_panels_beyond_the_cap_are_refused_but_known_ones_still_pass() {
        let mut registry = PanelRegistry::new([id("A")], 2);
        assert!(registry.admit(&id("A")).is_ok());
        assert!(registry.admit(&id("B")).is_ok());
        let refused = registry.admit(&id("C")).unwrap_err();
        assert_eq!(refused.reason(), "too_many_panels");
        assert!(registry.admit(&id("B")).is_ok());
        assert!(registry.admit(&id("A")).is_ok());
    }
}
