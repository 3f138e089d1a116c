//! Times demographics for 1.5 million people: `cargo run --release -p mcr-synth --example speed`.
use std::time::Instant;

fn main() {
    let cfg = mcr_synth::SynthConfig::default();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_500_000);
    let start = Instant::now();
    let people = mcr_synth::demographics(cfg.seed, n, cfg.today);
    let took = start.elapsed();
    let start = Instant::now();
    let region = mcr_synth::generate(&cfg);
    let region_took = start.elapsed();
    #[expect(clippy::print_stdout, reason = "an example that reports a measurement")]
    {
        println!("demographics: {} people in {:.2?}", people.len(), took);
        println!(
            "generate (default config, {} people): {:.2?}",
            region.people.len(),
            region_took
        );
    }
}
