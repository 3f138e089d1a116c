//! `mcr sources --config FILE`: the simulated source systems alone, each on its own port.

use anyhow::Context;
use mcr_sources::{Behaviour, SourceHandle};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_patients")]
    pub patients: usize,
    /// The region's "today" (default: the real today).
    #[serde(default)]
    pub today: Option<chrono::NaiveDate>,
    /// Patients with very large records besides, for the benchmark's view of one:
    /// `very_large = { patients = 1, scale = 75 }` (about 15,000 resources each;
    /// `mcr_synth::VeryLarge`).
    #[serde(default)]
    pub very_large: Option<VeryLargeEntry>,
    #[serde(rename = "source")]
    pub sources: Vec<SourceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VeryLargeEntry {
    pub patients: usize,
    pub scale: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// `gp`, `acute`, `community` or `socialcare`.
    pub id: String,
    pub listen: SocketAddr,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Answer GP Connect Access Record: Structured too (`[source.gp_connect] asid = "…"`).
    #[serde(default)]
    pub gp_connect: Option<mcr_sources::GpConnectOptions>,
}

fn default_seed() -> u64 {
    2017
}

fn default_patients() -> usize {
    10_000
}

impl SourcesConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let c: SourcesConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if c.sources.is_empty() {
            anyhow::bail!("{}: no [[source]] entries", path.display());
        }
        if c.patients == 0 || c.patients > 2_000_000 {
            anyhow::bail!("{}: patients must be between 1 and 2000000", path.display());
        }
        Ok(c)
    }
}

/// Generate the region and start the configured sources.
pub async fn start(
    c: &SourcesConfig,
    today: chrono::NaiveDate,
) -> anyhow::Result<Vec<SourceHandle>> {
    let very_large = c
        .very_large
        .as_ref()
        .map_or_else(mcr_synth::VeryLarge::default, |v| mcr_synth::VeryLarge {
            patients: v.patients,
            scale: v.scale,
        });
    let region = mcr_synth::generate_with(
        &mcr_synth::SynthConfig {
            seed: c.seed,
            patients: c.patients,
            today: c.today.unwrap_or(today),
        },
        very_large,
    );
    let mut handles = Vec::new();
    for entry in &c.sources {
        let slice = region.source(&entry.id).with_context(|| {
            format!(
                "unknown source `{}`: the simulated sources are gp, acute, community, socialcare",
                entry.id
            )
        })?;
        let listener = tokio::net::TcpListener::bind(entry.listen)
            .await
            .with_context(|| format!("source {}: cannot listen on {}", entry.id, entry.listen))?;
        let options = mcr_sources::SourceOptions {
            gp_connect: entry.gp_connect.clone(),
            ..Default::default()
        };
        handles.push(
            mcr_sources::serve_with(slice.clone(), listener, entry.behaviour.clone(), options)
                .await?,
        );
    }
    Ok(handles)
}
