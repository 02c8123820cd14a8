//! `--provenance` and `--sbom`: the statements about each image of a build, stored as its
//! attestation manifest (`rbuild_cache::attest`) for the image index `platforms.rs` makes.
//!
//! Provenance is SLSA v0.2 as BuildKit writes it: the base images as materials (by
//! digest), the Dockerfile frontend and its entry point, the platform; `mode=max` adds the
//! build arguments (values of names that look secret left out, by the explain records'
//! rule). The SBOM is an SPDX 2.3 document of the packages dpkg and apk list in the image. With `SOURCE_DATE_EPOCH` the
//! times are the epoch, so the attestations, like the image, are the same on every build.

use crate::flags::hiargs::{Build, Dockerfile, ProvenanceMode};
use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use rbuild_cache::attest::{self, Predicate};
use rbuild_cache::{Store, StoredImage};
use rbuild_graph::{BuildGraph, Op, Platform};
use serde_json::{Map, Value, json};

/// When the build started and ended, as the statements say it.
pub struct Times {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
}

impl Times {
    /// Now, or `SOURCE_DATE_EPOCH` for both when the build has one.
    pub fn new(build: &Build, started: DateTime<Utc>) -> Times {
        match build.epoch.and_then(|e| DateTime::from_timestamp(e, 0)) {
            Some(epoch) => Times {
                started: epoch,
                finished: epoch,
            },
            None => Times {
                started,
                finished: Utc::now(),
            },
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The attestation manifest for `image` (built for `platform`, named `name` if tagged),
/// or nothing when the build asked for none.
pub fn for_image(
    store: &Store,
    build: &Build,
    graph: &BuildGraph,
    times: &Times,
    image: &StoredImage,
    platform: &Platform,
    name: Option<&str>,
) -> Result<Option<attest::Descriptor>> {
    let a = build.attestations;
    if !a.any() {
        return Ok(None);
    }
    let platform_name = platform.to_string();
    let subject = name.map_or_else(
        || "_".to_string(),
        |n| attest::docker_purl(n, &platform_name),
    );
    let mut predicates = Vec::new();
    if let Some(mode) = a.provenance {
        predicates.push(Predicate {
            predicate_type: attest::SLSA_PROVENANCE,
            predicate: provenance(build, graph, times, platform, mode),
        });
    }
    if a.sbom {
        let (packages, distro) = store
            .image_packages(image)
            .context("cannot read the image's package databases for its SBOM")?;
        predicates.push(Predicate {
            predicate_type: attest::SPDX,
            predicate: attest::spdx_document(
                name.unwrap_or("image"),
                image
                    .config_digest
                    .strip_prefix("sha256:")
                    .unwrap_or(&image.config_digest),
                &rfc3339(times.finished),
                &packages,
                distro,
            ),
        });
    }
    let statements: Vec<(&str, Vec<u8>)> = predicates
        .iter()
        .map(|p| {
            let s = attest::statement(&subject, &image.manifest_digest, p);
            (p.predicate_type, s.to_string().into_bytes())
        })
        .collect();
    let entry = store
        .put_attestation(&image.manifest_digest, &statements)
        .context("cannot store the attestation manifest")?;
    Ok(Some(entry))
}

/// The SLSA v0.2 predicate of a build for `platform`.
fn provenance(
    build: &Build,
    graph: &BuildGraph,
    times: &Times,
    platform: &Platform,
    mode: ProvenanceMode,
) -> Value {
    let mut materials: Vec<Value> = Vec::new();
    for (_, v) in graph.iter() {
        let Op::Image {
            reference,
            digest: Some(digest),
            platform: p,
        } = &v.op
        else {
            continue;
        };
        if p != platform {
            continue;
        }
        let m = json!({
            "uri": attest::docker_purl(reference, &p.to_string()),
            "digest": { "sha256": digest.strip_prefix("sha256:").unwrap_or(digest) },
        });
        if !materials.contains(&m) {
            materials.push(m);
        }
    }
    let entry_point = match &build.dockerfile {
        Dockerfile::Stdin => "-".to_string(),
        Dockerfile::File(p) => p
            .strip_prefix(&build.context)
            .unwrap_or(p)
            .display()
            .to_string(),
    };
    let mut parameters = json!({ "frontend": "dockerfile.v0" });
    if mode == ProvenanceMode::Max {
        let mut args = Map::new();
        for (k, v) in &build.build_args {
            // The explain records' rule: a name that may hold a secret is never shown.
            if !rbuild_solver::explain::looks_secret(k) {
                args.insert(format!("build-arg:{k}"), json!(v));
            }
        }
        if let Some(t) = build.targets.last() {
            args.insert("target".into(), json!(t));
        }
        parameters["args"] = Value::Object(args);
        parameters["locals"] = json!([{ "name": "context" }, { "name": "dockerfile" }]);
    }
    json!({
        "builder": { "id": "" },
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": materials,
        "invocation": {
            "configSource": { "entryPoint": entry_point },
            "parameters": parameters,
            "environment": { "platform": platform.to_string() },
        },
        "metadata": {
            "buildStartedOn": rfc3339(times.started),
            "buildFinishedOn": rfc3339(times.finished),
            "completeness": {
                "parameters": mode == ProvenanceMode::Max,
                "environment": true,
                "materials": false,
            },
            "reproducible": build.epoch.is_some(),
        },
    })
}
