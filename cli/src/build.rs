//! `rbuild build`: read the Dockerfile, lower it, solve the graph, export the image.

use crate::args::{BuildArgs, GraphFormat, Progress};
use crate::outputs;
use crate::progress::Printer;
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::Store;
use rbuild_frontend::lower::{self, ImageResolver, LowerOptions, LoweredTargets, ResolvedImage};
use rbuild_graph::actions;
use rbuild_graph::image::ImageConfig;
use rbuild_graph::render;
use rbuild_graph::{Platform, RunOp};
use rbuild_solver::{SolveOptions, Solver};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Base images come from the local store, or are resolved in their registry when missing
/// (or always, with `--pull`): only the manifest and config are fetched here, what
/// lowering needs; the image-source vertex fetches the layers when the solve needs them.
/// The manifest digest pins the cache key.
pub struct StoreResolver<'a> {
    pub store: &'a Store,
    /// How to reach registries (the runtime and `--insecure-registry` hosts); None: only
    /// what is local.
    pub pull: Option<(&'a tokio::runtime::Runtime, &'a [String])>,
    pub always_pull: bool,
    /// Made on first use: setting up TLS reads every CA certificate, which a build of
    /// local images should not pay for. The solve reuses it to pull.
    pub client: std::cell::OnceCell<rbuild_cache::registry::RegistryClient>,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, String> {
        let local = self.store.image(reference).map_err(|e| e.to_string())?;
        let (config, digest) = match (local, &self.pull) {
            (Some(img), _) if !self.always_pull => (img.config, img.manifest_digest),
            (local, Some((runtime, insecure))) => {
                let client = match self.client.get() {
                    Some(c) => c,
                    None => {
                        let c = crate::pull::client(insecure).map_err(|e| format!("{e:#}"))?;
                        self.client.get_or_init(|| c)
                    }
                };
                let platform = rbuild_solver::ops::source::registry_platform(platform);
                let resolved =
                    runtime.block_on(rbuild_cache::pull::resolve(client, reference, &platform));
                match (resolved, local) {
                    (Ok(remote), _) => (remote.config, remote.manifest_digest),
                    // A local image is still usable when the registry cannot be reached.
                    (Err(_), Some(img)) => (img.config, img.manifest_digest),
                    (Err(e), None) => {
                        return Err(format!(
                            "{reference} is not in the local store and pulling it failed: {e}"
                        ));
                    }
                }
            }
            (Some(img), None) => (img.config, img.manifest_digest),
            (None, None) => return Ok(None),
        };
        let config: ImageConfig = serde_json::from_slice(&config)
            .map_err(|e| format!("image {reference}: config is not valid JSON: {e}"))?;
        Ok(Some(ResolvedImage {
            digest: Some(digest),
            config,
        }))
    }
}

/// `KEY=VALUE` as given; a bare `KEY` takes its value from rbuild's environment (docker's rule).
pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                bail!("--build-arg {arg:?}: the name is empty; write --build-arg NAME=VALUE")
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

struct Inputs {
    context: PathBuf,
    dockerfile_name: String,
    source: String,
    ignore: Vec<String>,
}

fn read_inputs(args: &BuildArgs) -> Result<Inputs> {
    let context = args.context.clone().unwrap_or_else(|| PathBuf::from("."));
    if !context.is_dir() {
        bail!(
            "build context {} is not a directory; pass the context directory as the last argument",
            context.display()
        );
    }
    let dockerfile = match &args.file {
        Some(f) if f.as_os_str() == "-" => None,
        Some(f) => Some(f.clone()),
        None => Some(context.join("Dockerfile")),
    };
    let (source, dockerfile_name) = match &dockerfile {
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the Dockerfile from stdin")?;
            (s, "-".to_string())
        }
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| {
                format!(
                    "cannot read Dockerfile {}; name it with -f or put a Dockerfile in the context",
                    path.display()
                )
            })?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("{}: the Dockerfile is not valid UTF-8", path.display()))?;
            (text, path.display().to_string())
        }
    };
    let df_path = dockerfile.unwrap_or_else(|| context.join("Dockerfile"));
    let ignore = rbuild_graph::dockerignore::read_ignore_file(&context, &df_path)
        .with_context(|| format!("cannot read the .dockerignore of {}", context.display()))?;
    Ok(Inputs {
        context,
        dockerfile_name,
        source,
        ignore,
    })
}

pub fn build(root: &Path, insecure: &[String], mut args: BuildArgs) -> Result<ExitCode> {
    if !args.run && !args.run_command.is_empty() {
        bail!("a command after `--` is only for --run: rbuild build --run [-- CMD…] CONTEXT");
    }
    let (context, run_command) = crate::targets::split_run_command(
        args.context.take(),
        std::mem::take(&mut args.run_command),
    );
    args.context = context;
    if args.push && args.tags.is_empty() && !args.dry_run {
        bail!("--push needs a name to push to: add -t REGISTRY/NAME:TAG");
    }
    // Which stages are built: each --target, or the last stage.
    let stages: Vec<Option<String>> = if args.targets.is_empty() {
        vec![None]
    } else {
        args.targets.iter().cloned().map(Some).collect()
    };
    let target_tags = crate::targets::assign_tags(&args.tags, &stages)?;
    let inputs = read_inputs(&args)?;
    let cache_flags = crate::cache_flags::CacheFlags::parse(&args.cache_to, &args.cache_from)?;
    let build_args = parse_build_args(&args.build_args)?;
    let platform = Platform::host();
    let default_network = match args.network.as_deref() {
        None | Some("default") | Some("host") => rbuild_graph::NetworkMode::Host,
        Some("none") => rbuild_graph::NetworkMode::None,
        Some(other) => bail!("--network={other}: rbuild supports host and none"),
    };
    let opts = LowerOptions {
        dockerfile_name: inputs.dockerfile_name.clone(),
        target: None,
        build_args,
        platform,
        ignore_patterns: inputs.ignore.clone(),
        default_network,
    };

    // A dry run of a root that does not exist yet must not create one.
    let store = if args.dry_run && !root.exists() {
        None
    } else {
        Some(
            Store::open(root)
                .with_context(|| format!("cannot open the store at {}", root.display()))?,
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (lowered, resolver_client) = match &store {
        Some(s) => {
            let resolver = StoreResolver {
                store: s,
                // A dry run reports what is local; it never downloads.
                pull: if args.dry_run {
                    None
                } else {
                    Some((&runtime, insecure))
                },
                always_pull: args.pull,
                client: std::cell::OnceCell::new(),
            };
            let lowered = lower::lower_targets(&inputs.source, &opts, &args.targets, &resolver);
            (lowered, resolver.client.into_inner())
        }
        None => (
            lower::lower_targets(&inputs.source, &opts, &args.targets, &lower::NoImages),
            None,
        ),
    };
    let lowered: LoweredTargets = lowered.map_err(|d| anyhow!("{d}"))?;

    // The build ends with actions, vertices like the steps: each target is exported (the
    // last one carrying inline cache metadata when asked), pushed, and the last one run.
    let mut graph = lowered.graph;
    let inline = cache_flags
        .to
        .contains(&crate::cache_flags::CacheTo::Inline);
    let mut exports = Vec::new();
    for (i, (target, tags)) in lowered.targets.iter().zip(&target_tags).enumerate() {
        let history: Vec<_> = target
            .history
            .iter()
            .map(|h| (h.entry.clone(), h.vertex))
            .collect();
        let last = i + 1 == lowered.targets.len();
        exports.push(actions::add_export(
            &mut graph,
            target.root,
            &target.config,
            &history,
            tags,
            inline && last,
        ));
    }
    let mut roots = exports.clone();
    if args.push {
        for (export, tags) in exports.iter().zip(&target_tags) {
            for t in tags {
                roots.push(actions::add_push(&mut graph, *export, t));
            }
        }
    }
    let last_export = *exports
        .last()
        .ok_or_else(|| anyhow!("no target was built"))?;
    let run_vertex = if args.run {
        let name = target_tags
            .last()
            .and_then(|t| t.first().cloned())
            .unwrap_or_else(|| "the built image".to_string());
        let run = RunOp {
            command: run_command,
            network: default_network,
            name,
            ..Default::default()
        };
        let v = actions::add_run(&mut graph, last_export, run);
        roots.push(v);
        Some(v)
    } else {
        None
    };
    let mut solve_opts = SolveOptions {
        no_cache: args.no_cache,
        context_dir: Some(inputs.context.clone()),
        cancel: rbuild_executor::CancelToken::new(),
        ..Default::default()
    };

    if args.dry_run {
        let plan = match &store {
            Some(s) if !args.no_cache => {
                Some(Solver::new(s.clone()).plan(&graph, &roots, &solve_opts)?)
            }
            _ => None,
        };
        let cached = |v| {
            plan.as_ref()
                .and_then(|p| p.get(&v).copied())
                .unwrap_or(false)
        };
        let cached: &dyn Fn(rbuild_graph::VertexId) -> bool = &cached;
        match args.format {
            GraphFormat::Text => print!("{}", render::render_text(&graph, &roots, Some(cached))),
            GraphFormat::Dot => print!("{}", render::render_dot(&graph, &roots, Some(cached))),
            GraphFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&render::render_json(&graph, &roots, Some(cached)))?
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }

    let store = store.expect("opened above unless dry-run");
    // One client for pulls, pushes and the cache: made only when something needs it.
    let needs_client = args.push || !cache_flags.to.is_empty() || !cache_flags.from.is_empty();
    let client = match resolver_client {
        Some(c) => Some(c),
        None if needs_client => Some(crate::pull::client(insecure)?),
        None => None,
    };
    solve_opts.registry = client.clone();
    if let Some(client) = &client
        && !cache_flags.from.is_empty()
        && !args.no_cache
    {
        solve_opts.imported =
            crate::cache_flags::import(&runtime, client, &cache_flags.from, &mut |w| {
                eprintln!("{w}")
            });
    }
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        args.progress
    };
    let graph = Arc::new(graph);
    let solver = Solver::new(store.clone());
    if solver.uses_copying_snapshotter() && !args.quiet {
        eprintln!(
            "note: overlayfs cannot be used under {} (is it on overlayfs itself?); using the slower copying snapshotter",
            root.display()
        );
    }

    let result = runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = Printer::new(progress, graph.clone());
        let printing = tokio::spawn(printer.consume(rx));
        let cancel = solve_opts.cancel.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        });
        let solved = solver.solve(graph.clone(), &roots, &solve_opts, tx).await;
        ctrl_c.abort();
        let _ = printing.await;
        solved
    });
    let outcomes = match result {
        Ok(o) => o,
        // Ctrl-C while the container of --run runs: its status, as `docker run` gives it.
        Err(rbuild_solver::SolveError::Cancelled) if run_vertex.is_some() => {
            return Ok(crate::run::exit_code(130));
        }
        Err(e) => bail!(
            "{}",
            explain_failure(&e, &inputs.dockerfile_name, &inputs.source)
        ),
    };

    let mut built: Vec<rbuild_cache::StoredImage> = Vec::new();
    for export in &exports {
        let manifest = outcomes
            .get(export)
            .and_then(|o| o.image.clone())
            .ok_or_else(|| anyhow!("an export did not produce an image"))?;
        let image = store
            .image(&manifest)?
            .ok_or_else(|| anyhow!("the exported image {manifest} is missing from the store"))?;
        built.push(image);
    }
    let last_root = lowered
        .targets
        .last()
        .map(|t| t.root)
        .ok_or_else(|| anyhow!("no target was built"))?;
    if let Some(client) = &client
        && (!cache_flags.to.is_empty() || !cache_flags.from.is_empty())
    {
        let solved = crate::cache_flags::Built {
            runtime: &runtime,
            client,
            solver: &solver,
            opts: &solve_opts,
            graph: &graph,
            outcomes: &outcomes,
            root: last_root,
        };
        crate::cache_flags::export(&store, &solved, &cache_flags.to, &mut |n| {
            if !args.quiet {
                eprintln!("{n}")
            }
        })?;
        solver.remember_outcomes(&outcomes)?;
        if let Some(imported) = &solve_opts.imported
            && !args.quiet
        {
            eprintln!("{}", crate::cache_flags::import_summary(imported));
        }
    }
    if args.quiet {
        for image in &built {
            println!("{}", image.config_digest);
        }
    }
    let image = built.pop().ok_or_else(|| anyhow!("no target was built"))?;
    let tags = target_tags.last().cloned().unwrap_or_default();
    for out in &args.outputs {
        outputs::write(&store, &image, &tags, out)?;
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &image.config_digest)
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    if let Some(v) = run_vertex {
        let code = outcomes.get(&v).and_then(|o| o.exit_code).unwrap_or(255);
        return Ok(crate::run::exit_code(code));
    }
    Ok(ExitCode::SUCCESS)
}

/// A failed step as BuildKit shows it: its last output, then the Dockerfile
/// lines it came from (marked `>>>`), then the error naming file and line.
pub fn explain_failure(err: &rbuild_solver::SolveError, dockerfile: &str, source: &str) -> String {
    use rbuild_solver::SolveError as E;
    let (lines, output): (Option<(usize, usize)>, &[String]) = match err {
        E::RunFailed {
            lines, last_output, ..
        } => (*lines, last_output),
        E::MissingContextFile { lines, .. } | E::Step { lines, .. } => (*lines, &[]),
        _ => (None, &[]),
    };
    let mut out = String::new();
    if !output.is_empty() {
        out.push_str("------ last output:\n");
        for l in output {
            out.push_str(&format!("  {l}\n"));
        }
        out.push_str("------\n");
    }
    let Some((start, end)) = lines else {
        return format!("{out}{err}");
    };
    out.push_str(&format!("{dockerfile}:{start}\n"));
    let text: Vec<&str> = source.lines().collect();
    let from = start.saturating_sub(3).max(1);
    for n in from..=end.min(text.len()) {
        let mark = if n >= start { ">>>" } else { "   " };
        out.push_str(&format!("  {n:>4} | {mark} {}\n", text[n - 1]));
    }
    out.push_str(&format!("{dockerfile}:{start}: {err}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_take_values_or_the_environment() {
        // SAFETY: single-threaded test setting a variable only it reads.
        unsafe { std::env::set_var("RBUILD_TEST_ARG", "from-env") };
        let got = parse_build_args(&[
            "A=1".into(),
            "B=".into(),
            "RBUILD_TEST_ARG".into(),
            "UNSET_X_Y".into(),
        ])
        .unwrap();
        assert_eq!(got.get("A").map(String::as_str), Some("1"));
        assert_eq!(got.get("B").map(String::as_str), Some(""));
        assert_eq!(
            got.get("RBUILD_TEST_ARG").map(String::as_str),
            Some("from-env")
        );
        assert!(!got.contains_key("UNSET_X_Y"));
        assert!(parse_build_args(&["=x".into()]).is_err());
    }

    #[test]
    fn failures_show_output_and_the_dockerfile_lines() {
        let err = rbuild_solver::SolveError::RunFailed {
            vertex: rbuild_graph::VertexId(3),
            description: "[2/2] RUN false".into(),
            lines: Some((2, 2)),
            exit_code: 1,
            last_output: vec!["oops".into()],
        };
        let text = explain_failure(&err, "ctx/Dockerfile", "FROM scratch\nRUN false\n");
        assert!(text.contains("  oops\n"), "{text}");
        assert!(text.contains("     2 | >>> RUN false"), "{text}");
        assert!(text.ends_with("ctx/Dockerfile:2: [2/2] RUN false: process did not complete successfully: exit code: 1"), "{text}");
    }
}
