//! One vertex of a solve, in two phases the scheduler can hold apart: [`lookup`] (its
//! runtime key, then the local or imported cache; a miss is explained when the build keeps
//! a history) and [`execute`] (the op's work, then its cache record). `--max-parallelism`
//! limits only the second.

use crate::error::SolveError;
use crate::explain::{Facts, Miss};
use crate::op::{SolveOp, StepContext, Work, runtime_key};
use crate::options::SolveOptions;
use crate::outcome::Outcome;
use crate::progress::Event;
use crate::services::Services;
use rbuild_executor::CancelToken;
use rbuild_graph::{BuildGraph, CacheKey, VertexId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// What one vertex task returns: its runtime key and outcome.
pub(crate) type VertexResult = Result<(CacheKey, Outcome), SolveError>;

/// What every vertex task of one solve shares.
pub(crate) struct SolveRun {
    pub services: Arc<Services>,
    pub graph: Arc<BuildGraph>,
    pub opts: Arc<SolveOptions>,
    pub cancel: CancelToken,
    pub events: UnboundedSender<Event>,
}

/// A vertex whose inputs are done, with what its step needs.
pub(crate) struct ReadyVertex {
    pub vertex: VertexId,
    pub op: Arc<dyn SolveOp>,
    pub inputs: Vec<(CacheKey, Outcome)>,
    pub ancestors: HashMap<VertexId, Outcome>,
}

/// A vertex the cache could not answer, ready to execute.
pub(crate) struct Pending {
    key: CacheKey,
    op: Arc<dyn SolveOp>,
    step: Arc<StepContext>,
    miss: Option<Miss>,
    /// What the step was made of, noted in the history once it has run: a step that fails
    /// leaves the last good build's entry as the baseline of the next build.
    made_of: Option<(Vec<CacheKey>, Facts)>,
    /// The store's lock of the key, held from [`claim`] until the record is written.
    lock: Option<rbuild_cache::KeyLock>,
    /// `--no-cache` or `--no-cache-filter` names this step: never answered from the cache.
    ignores_cache: bool,
}

/// How a lookup ended.
pub(crate) enum Looked {
    Hit(CacheKey, Box<Outcome>),
    Miss(Pending),
}

/// The runtime key of `op` at `step` (on the blocking pool when computing it blocks), and
/// the facts it named when `facts` is given.
pub(crate) async fn key_of(
    op: &Arc<dyn SolveOp>,
    step: &Arc<StepContext>,
    input_keys: &[CacheKey],
    facts: Option<Facts>,
) -> Result<(CacheKey, Option<Facts>), SolveError> {
    if op.key_blocks() {
        let (op, step, keys) = (op.clone(), step.clone(), input_keys.to_vec());
        Work::blocking(move || runtime_key(op.as_ref(), &step, &keys, facts))
            .run()
            .await
    } else {
        runtime_key(op.as_ref(), step, input_keys, facts)
    }
}

/// Phase one: the runtime key, then the local cache, the imported cache. With a history,
/// a hit notes what the step was made of and a miss is explained.
pub(crate) async fn lookup(run: &SolveRun, ready: ReadyVertex) -> Result<Looked, SolveError> {
    let ReadyVertex {
        vertex: v,
        op,
        inputs,
        ancestors,
    } = ready;
    if run.cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    let (input_keys, inputs): (Vec<CacheKey>, Vec<Outcome>) = inputs.into_iter().unzip();
    let step = Arc::new(StepContext {
        graph: run.graph.clone(),
        vertex: v,
        inputs,
        ancestors,
        opts: run.opts.clone(),
        cancel: run.cancel.clone(),
        events: run.events.clone(),
        services: run.services.clone(),
    });
    let cacheable = op.cacheable();
    let history = run.opts.history.as_ref().filter(|_| cacheable);
    let (key, facts) = key_of(&op, &step, &input_keys, history.map(|_| Facts::default())).await?;
    let key_hex = key.to_hex();

    let hit = if cacheable && !run.opts.ignores_cache(v) {
        cache_lookup(run, &key_hex, &step.inputs)?
    } else {
        None
    };
    let mut miss = None;
    let mut made_of = None;
    if let (Some(h), Some(mut facts)) = (history, facts) {
        let store = &run.services.store;
        if h.needs_entries(v, &key, &facts, store) {
            facts = key_of(&op, &step, &input_keys, Some(Facts::listing()))
                .await?
                .1
                .unwrap_or_default();
        }
        if hit.is_none() {
            let m = h.explain(
                v,
                &key,
                &input_keys,
                &facts,
                run.opts.ignores_cache(v),
                store,
            );
            h.missed(v, m.clone());
            miss = Some(m);
            made_of = Some((input_keys, facts));
        } else {
            h.solved(v, &key, &input_keys, facts);
        }
    }
    if let Some(mut outcome) = hit {
        op.cache_hit(&mut outcome);
        outcome.cache_key = Some(key_hex);
        let _ = run.events.send(Event::Cached { vertex: v });
        return Ok(Looked::Hit(key, Box::new(outcome)));
    }
    Ok(Looked::Miss(Pending {
        key,
        op,
        step,
        miss,
        made_of,
        lock: None,
        ignores_cache: run.opts.ignores_cache(v),
    }))
}

/// Between the phases: another build on this root may be executing this very step. Takes
/// the store's lock of its key, waiting while another process holds it (polling, so a
/// cancelled build stops waiting), then looks in the cache once more: the holder's record
/// is a hit. A holder that dies loses the lock to the kernel, and this build takes over.
pub(crate) async fn claim(run: &SolveRun, mut pending: Pending) -> Result<Looked, SolveError> {
    if !pending.op.cacheable() || pending.ignores_cache {
        return Ok(Looked::Miss(pending));
    }
    let store = &run.services.store;
    let key_hex = pending.key.to_hex();
    let mut pause = std::time::Duration::from_millis(10);
    let lock = loop {
        if let Some(lock) = store.try_lock_key(&key_hex)? {
            break lock;
        }
        if run.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    };
    let Some(mut outcome) = cache_lookup(run, &key_hex, &pending.step.inputs)? else {
        pending.lock = Some(lock);
        return Ok(Looked::Miss(pending));
    };
    drop(lock);
    let v = pending.step.vertex;
    pending.op.cache_hit(&mut outcome);
    outcome.cache_key = Some(key_hex);
    if let (Some(h), Some((input_keys, facts))) = (&run.opts.history, pending.made_of) {
        h.solved(v, &pending.key, &input_keys, facts);
    }
    let _ = run.events.send(Event::Cached { vertex: v });
    Ok(Looked::Hit(pending.key, Box::new(outcome)))
}

/// Phase two: makes the inputs' layers present, runs the op, records its result.
pub(crate) async fn execute(run: &SolveRun, pending: Pending) -> VertexResult {
    let Pending {
        key,
        op,
        step,
        miss,
        made_of,
        lock: _lock,
        ignores_cache: _,
    } = pending;
    let v = step.vertex;
    if run.cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    let _ = run.events.send(Event::Started {
        vertex: v,
        at: Instant::now(),
    });
    if let Some(miss) = miss.filter(|m| !m.causes.is_empty()) {
        let _ = run.events.send(Event::CacheMiss { vertex: v, miss });
    }
    // A step runs on its inputs' content: lazily imported layers must be here now.
    let needed = distinct_layers(&step.inputs);
    run.services
        .ensure_layers(&needed, &run.opts)
        .await
        .map_err(|e| step.fail(e))?;
    // And the imported content of a cache mount this root never had.
    crate::cache_mounts::restore(&run.services, &run.opts, &run.graph, v).await?;
    let cacheable = op.cacheable();
    let mut outcome = op.execute(step).run().await?;
    outcome.created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if cacheable {
        let key_hex = key.to_hex();
        run.services
            .store
            .record_put(&key_hex, &outcome.record()?)?;
        outcome.cache_key = Some(key_hex);
    }
    if let (Some(h), Some((input_keys, facts))) = (&run.opts.history, made_of) {
        h.solved(v, &key, &input_keys, facts);
    }
    let _ = run.events.send(Event::Done {
        vertex: v,
        at: Instant::now(),
        peak_memory: outcome.peak_memory.take(),
    });
    Ok((key, outcome))
}

/// The outcome the cache has for `key`: a local record whose blobs are all present, else
/// an imported record (its blobs stay remote until something needs them; it is recorded
/// locally when they are all here already). An imported record whose config does not
/// parse is a miss (the step runs), never a failure; its chain is shared with an input's
/// equal one.
fn cache_lookup(
    run: &SolveRun,
    key: &str,
    inputs: &[Outcome],
) -> Result<Option<Outcome>, SolveError> {
    if let Some(rec) = run.services.usable_record(key)? {
        return Outcome::from_shared(rec)
            .map(Some)
            .map_err(|source| SolveError::BadCacheRecord {
                key: key.to_string(),
                source,
            });
    }
    let Some(imp) = &run.opts.imported else {
        return Ok(None);
    };
    let Some(rec) = imp.record(key) else {
        return Ok(None);
    };
    let Ok(outcome) = Outcome::from_record(rec.clone(), inputs) else {
        return Ok(None);
    };
    if run.services.has_layers(&rec.layers) {
        run.services.store.record_put(key, rec)?;
    }
    Ok(Some(outcome))
}

/// The layers of `inputs`' chains, each once. An export has an input per step its history
/// names, and their chains share most layers: listing every chain's would make a
/// 10,000-step image's export handle steps × layers entries.
fn distinct_layers(inputs: &[Outcome]) -> Vec<rbuild_cache::Layer> {
    let mut chains = HashSet::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for o in inputs {
        // Outcomes share chains (a step that made no layer holds its input's).
        if !chains.insert(Arc::as_ptr(&o.layers) as *const rbuild_cache::Layer) {
            continue;
        }
        for l in o.layers.iter() {
            if seen.insert(l.digest.as_str()) {
                out.push(l.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_cache::Layer;

    fn layer(n: u8) -> Layer {
        Layer {
            digest: format!("sha256:{n:064x}"),
            diff_id: format!("sha256:{:064x}", n + 100),
            size: n.into(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    fn outcome(layers: &Arc<[Layer]>) -> Outcome {
        Outcome {
            layers: layers.clone(),
            ..Default::default()
        }
    }

    #[test]
    fn an_exports_inputs_need_each_layer_once() {
        let short: Arc<[Layer]> = vec![layer(1), layer(2)].into();
        let long: Arc<[Layer]> = vec![layer(1), layer(2), layer(3)].into();
        // Many steps holding the same chains, as an export's history inputs do.
        let mut inputs: Vec<Outcome> = (0..1000).map(|_| outcome(&short)).collect();
        inputs.extend((0..1000).map(|_| outcome(&long)));
        // A chain equal to another but not shared is still listed once per layer.
        inputs.push(outcome(&vec![layer(1), layer(4)].into()));
        assert_eq!(
            distinct_layers(&inputs),
            vec![layer(1), layer(2), layer(3), layer(4)]
        );
        assert!(distinct_layers(&[]).is_empty());
    }
}
