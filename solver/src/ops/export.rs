//! The export action: the final image's config (history, rootfs, created: where the
//! image config is assembled), manifest and tags; with `--squash` the layers above the
//! base image merged into one (`Store::squash`), and a warning when the image is deeper
//! than docker runs.
//!
//! A squashed image's history is what `podman build --squash` writes (buildah's
//! single-commit build): the base image's entries as they were, then one entry per step
//! of the Dockerfile, every one `empty_layer` except the last, which carries the merged
//! layer whatever instruction it is.

use crate::cache_export::{CacheMode, export_records};
use crate::error::SolveError;
use crate::op::{SolveOp, StepContext, Work};
use crate::outcome::Outcome;
use crate::progress::Event;
use rbuild_graph::image::{History, ImageConfig, RootFs};
use rbuild_graph::{BuildGraph, ExportOp, VertexId};
use std::collections::HashMap;
use std::sync::Arc;

/// Whether each history step produced a layer, given how many layers its vertex added
/// over its input 0 (`None` entries are metadata-only steps or inherited base entries).
///
/// Base image entries come first and keep their flags; a metadata step (no vertex) after
/// them is always empty; an fs step is empty when its diff was empty. `base_layers` is how
/// many leading layers the base image contributes.
pub fn history_flags(steps: &[(History, Option<usize>)], base_layers: usize) -> Vec<History> {
    let mut base_seen = 0usize;
    let mut in_base = true;
    steps
        .iter()
        .map(|(h, added)| {
            let mut h = h.clone();
            match added {
                Some(n) => {
                    in_base = false;
                    h.empty_layer = *n == 0;
                }
                None => {
                    if in_base && !h.empty_layer && base_seen < base_layers {
                        base_seen += 1;
                    } else {
                        if !h.empty_layer {
                            in_base = false;
                        }
                        h.empty_layer = true;
                    }
                }
            }
            h
        })
        .collect()
}

/// The deepest layer chain docker runs: it refuses more with "max depth exceeded"
/// (moby's `maxLayerDepth`).
pub const DOCKER_MAX_DEPTH: usize = 125;

/// Rewrites the flags of `history` for an image whose layers above the first `base_layers`
/// were merged into `squashed` layers (none or one): every entry after the base's is
/// empty but the last, which carries the merged layer.
pub fn squash_history(history: &mut [History], base_layers: usize, squashed: usize) {
    // The base's entries end with its last layer's entry.
    let mut seen = 0;
    let own = if base_layers == 0 {
        0
    } else {
        history
            .iter()
            .position(|h| {
                seen += usize::from(!h.empty_layer);
                seen == base_layers
            })
            .map_or(history.len(), |i| i + 1)
    };
    let own = &mut history[own..];
    for h in own.iter_mut() {
        h.empty_layer = true;
    }
    if squashed > 0
        && let Some(last) = own.last_mut()
    {
        last.empty_layer = false;
    }
}

/// Fills in `created` of the history entries that lack it and returns the image's
/// `created`. Times come from the cache records of the steps (`vertex_times`, None for
/// metadata steps), so a rebuild from cache reproduces the same config and image ID, as
/// BuildKit does; a metadata step takes the time of the step before it. `epoch`
/// (SOURCE_DATE_EPOCH) overrides them all.
pub fn assign_times(
    history: &mut [History],
    vertex_times: &[Option<u64>],
    root_time: u64,
    epoch: Option<u64>,
) -> u64 {
    let mut last = root_time;
    let mut seen_own = false;
    for (h, t) in history.iter_mut().zip(vertex_times) {
        if let Some(t) = *t {
            seen_own = true;
            last = t;
        }
        if h.created.is_none() {
            h.created = Some(rfc3339(epoch.unwrap_or(last)));
        }
    }
    match epoch {
        Some(e) => e,
        None if seen_own => last,
        None => root_time,
    }
}

/// Unix seconds as RFC 3339 UTC, as docker writes `created`.
fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes input 0's filesystem as an image: the op's config with history, rootfs and
/// created filled in, the manifest, the tags. It reads the results of every step of the
/// image ([`StepContext::ancestors`]): history entries count the layers of their steps,
/// inline cache needs their keys.
pub struct ExportAction {
    op: ExportOp,
}

impl ExportAction {
    pub(crate) fn new(op: &ExportOp) -> Self {
        ExportAction { op: op.clone() }
    }

    /// Writes the image (blocking) and says what it wrote.
    fn write(&self, step: &StepContext) -> Result<Outcome, SolveError> {
        let (graph, v, solved) = (&step.graph, step.vertex, &step.ancestors);
        let inputs = &graph.vertex(v).inputs;
        let root = *inputs
            .first()
            .ok_or_else(|| SolveError::Internal("export without an input".into()))?;
        let history: Vec<(History, Option<VertexId>)> = self
            .op
            .history
            .iter()
            .map(|s| {
                (
                    s.entry.clone(),
                    s.input.and_then(|i| inputs.get(i).copied()),
                )
            })
            .collect();
        let epoch = step.opts.epoch.and_then(|e| u64::try_from(e).ok());
        let (mut cfg, base_layers) =
            image_config(graph, solved, root, &self.op.config, &history, epoch)?;
        let mut layers = solved
            .get(&root)
            .map(|o| o.layers.clone())
            .unwrap_or_default();
        if self.op.squash {
            let above = layers.len().saturating_sub(base_layers);
            if above > 1 {
                step.say(format!(
                    "squashing {above} layers above the base image into one"
                ));
            }
            layers = step
                .store()
                .squash(&layers, base_layers)
                .map_err(|e| step.fail(e))?
                .into();
            cfg.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
            let squashed = layers.len().saturating_sub(base_layers);
            squash_history(&mut cfg.history, base_layers, squashed);
        }
        if layers.len() > DOCKER_MAX_DEPTH {
            let _ = step.events.send(Event::Warning {
                vertex: step.vertex,
                message: format!(
                    "the image has {} layers; docker refuses to run images of more than {DOCKER_MAX_DEPTH} (\"max depth exceeded\"): build with --squash to merge the layers above the base image",
                    layers.len()
                ),
            });
        }
        let mut json = serde_json::to_vec(&cfg).map_err(|e| SolveError::Internal(e.to_string()))?;
        if self.op.inline_cache {
            // `--cache-to type=inline`: the cache records of the image's own steps.
            let records = export_records(graph, solved, root, CacheMode::Min)?;
            json = rbuild_cache::remote_cache::add_inline(
                &json,
                &rbuild_cache::remote_cache::CacheConfig::new(records),
            )
            // The config was serialized just above: it is a JSON object.
            .map_err(|e| SolveError::Internal(format!("inline cache metadata: {e}")))?;
        }
        let manifest = step
            .store()
            .put_image_annotated(&json, &layers, &self.op.tags, &self.op.annotations)
            .map_err(|e| step.fail(e))?;
        let config_digest = rbuild_cache::registry::sha256_digest(&json);
        step.say(format!("writing image {config_digest} done"));
        for t in &self.op.tags {
            step.say(format!("naming to {t} done"));
        }
        Ok(Outcome {
            layers,
            config: Some(cfg),
            image: Some(manifest),
            ..Default::default()
        })
    }
}

impl SolveOp for ExportAction {
    fn cacheable(&self) -> bool {
        false
    }

    fn needs_ancestors(&self) -> bool {
        true
    }

    fn execute(self: Arc<Self>, step: Arc<StepContext>) -> Work<Outcome> {
        Work::blocking(move || self.write(&step))
    }
}

/// The config of the image of `root`: `config` with history (empty_layer for metadata
/// steps and for steps whose diff was empty), rootfs.diff_ids and created (`epoch`,
/// SOURCE_DATE_EPOCH, when given); and how many of its layers the base image contributes.
pub fn image_config(
    graph: &BuildGraph,
    outcomes: &HashMap<VertexId, Outcome>,
    root: VertexId,
    config: &ImageConfig,
    history: &[(History, Option<VertexId>)],
    epoch: Option<u64>,
) -> Result<(ImageConfig, usize), SolveError> {
    let final_outcome = outcomes
        .get(&root)
        .ok_or_else(|| SolveError::Internal(format!("export: vertex {} was not solved", root.0)))?;
    let layers = &final_outcome.layers;
    let added = |v: VertexId| -> Result<usize, SolveError> {
        let own = outcomes.get(&v).ok_or_else(|| {
            SolveError::Internal(format!("export: vertex {} was not solved", v.0))
        })?;
        let base = graph
            .vertex(v)
            .inputs
            .first()
            .and_then(|i| outcomes.get(i))
            .map(|o| o.layers.len())
            .unwrap_or(0);
        Ok(own.layers.len().saturating_sub(base))
    };
    let mut steps = Vec::with_capacity(history.len());
    let mut stage_layers = 0usize;
    for (h, v) in history {
        let n = v.map(added).transpose()?;
        stage_layers += n.unwrap_or(0);
        steps.push((h.clone(), n));
    }
    let base_layers = layers.len().saturating_sub(stage_layers);
    let mut flagged = history_flags(&steps, base_layers);
    let vertex_times: Vec<Option<u64>> = history
        .iter()
        .map(|(_, v)| v.map(|v| outcomes.get(&v).map(|o| o.created).unwrap_or(0)))
        .collect();
    let created = assign_times(&mut flagged, &vertex_times, final_outcome.created, epoch);
    let mut cfg = config.clone();
    cfg.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    cfg.history = flagged;
    cfg.created = Some(rfc3339(created));
    Ok((cfg, base_layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(by: &str, empty: bool) -> History {
        History {
            created_by: Some(by.into()),
            empty_layer: empty,
            ..Default::default()
        }
    }

    #[test]
    fn flags_follow_layers() {
        let steps = vec![
            (h("base add", false), None),
            (h("base cmd", true), None),
            (h("ENV", false), None),
            (h("RUN true", false), Some(0)),
            (h("RUN touch", false), Some(1)),
            (h("CMD", false), None),
        ];
        let out = history_flags(&steps, 1);
        let flags: Vec<bool> = out.iter().map(|h| h.empty_layer).collect();
        assert_eq!(flags, [false, true, true, true, false, true]);
    }

    #[test]
    fn times_follow_records_or_the_epoch() {
        let mut hist = vec![
            History {
                created: Some("2020-01-01T00:00:00Z".into()),
                ..h("base", false)
            },
            h("ENV", true),
            h("RUN", false),
            h("CMD", true),
        ];
        let times = [None, None, Some(2_000_000_000), None];
        let mut a = hist.clone();
        assert_eq!(
            assign_times(&mut a, &times, 1_000_000_000, None),
            2_000_000_000
        );
        let got: Vec<&str> = a.iter().map(|h| h.created.as_deref().unwrap()).collect();
        assert_eq!(
            got,
            [
                "2020-01-01T00:00:00Z",
                "2001-09-09T01:46:40Z",
                "2033-05-18T03:33:20Z",
                "2033-05-18T03:33:20Z"
            ]
        );
        assert_eq!(assign_times(&mut hist, &times, 1_000_000_000, Some(0)), 0);
        assert_eq!(hist[0].created.as_deref(), Some("2020-01-01T00:00:00Z"));
        assert_eq!(hist[2].created.as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn squashed_history_is_empty_but_for_its_last_entry() {
        let flags =
            |hist: &[History]| -> Vec<bool> { hist.iter().map(|h| h.empty_layer).collect() };
        let base = [h("base add", false), h("base cmd", true)];
        let own = [
            h("ENV", true),
            h("RUN", false),
            h("COPY", false),
            h("CMD", true),
        ];
        let mut hist: Vec<History> = base.iter().chain(&own).cloned().collect();
        squash_history(&mut hist, 1, 1);
        assert_eq!(flags(&hist), [false, true, true, true, true, false]);
        // From scratch every entry is the image's own.
        let mut hist = own.to_vec();
        squash_history(&mut hist, 0, 1);
        assert_eq!(flags(&hist), [true, true, true, false]);
        // Nothing left above the base: no entry carries a layer.
        let mut hist: Vec<History> = base.iter().chain(&own).cloned().collect();
        squash_history(&mut hist, 1, 0);
        assert_eq!(flags(&hist), [false, true, true, true, true, true]);
    }

    #[test]
    fn scratch_base_has_no_base_layers() {
        let steps = vec![(h("COPY", false), Some(1)), (h("LABEL", false), None)];
        let flags: Vec<bool> = history_flags(&steps, 0)
            .iter()
            .map(|h| h.empty_layer)
            .collect();
        assert_eq!(flags, [false, true]);
    }
}
