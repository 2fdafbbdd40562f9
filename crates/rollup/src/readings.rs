//! Raw readings read whole, for computations that must see every one of them: the api-server's
//! ledger (see docs/accounting.md, "Without a rollup") computes its sums from these, with the
//! same pair rule as the rollup.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use energy_core::{EnergyPoint, Period};
use energy_influx::InfluxError;

use crate::{points_by_panel, queries, PointRow, Rollup};

/// Each panel's readings, in time order.
pub type PanelPoints = BTreeMap<String, Vec<EnergyPoint>>;

impl Rollup {
    /// Every reading stored in `[start, end)`, per panel (nanosecond times). Nothing when the
    /// database does not exist yet.
    pub async fn readings_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<PanelPoints, InfluxError> {
        let statement = queries::raw_readings(Period { start, end });
        match self.query_rows::<PointRow>(&statement).await {
            Ok(results) => Ok(points_by_panel(results.first())),
            Err(error) if error.is_database_missing() => Ok(PanelPoints::new()),
            Err(error) => Err(error),
        }
    }

    /// Each panel's last reading before `at` (panels with none are absent).
    pub async fn readings_before(
        &self,
        at: DateTime<Utc>,
    ) -> Result<BTreeMap<String, EnergyPoint>, InfluxError> {
        match self
            .query_rows::<PointRow>(&queries::every_reading_before(at))
            .await
        {
            Ok(results) => Ok(points_by_panel(results.first())
                .into_iter()
                .filter_map(|(panel, points)| Some((panel, *points.last()?)))
                .collect()),
            Err(error) if error.is_database_missing() => Ok(BTreeMap::new()),
            Err(error) => Err(error),
        }
    }
}
