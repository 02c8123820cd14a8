//! What the store holds, shown in docker's shapes: `images` (`image ls`), `inspect`
//! (`image inspect`) and `history` (`image history`), each with `--format`.

use crate::flags::hiargs::{Global, History, Images, Inspect};
use crate::shared::{store, template, when};
use anyhow::{Context, Result, anyhow, bail};
use rbuild_cache::{Store, StoredImage};
use rbuild_solver::progress::human_size;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `sha256:abcdef…` → the 12 hex digits docker shows as IMAGE ID.
fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// `name:tag` → (`name`, `tag`); a name without a tag (or with a digest) has `<none>`.
fn split_name(name: &str) -> (String, String) {
    match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') && !r.ends_with("@sha256") => (r.into(), t.into()),
        _ => (name.into(), "<none>".into()),
    }
}

/// Docker's glob (`path.Match`): `*` is any run of characters but `/`, `?` one of them.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text)
                || (text.first().is_some_and(|c| *c != b'/') && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(c)) if p == c => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Whether `repo:tag` matches a `reference=` pattern: with a tag part, the whole name;
/// without, the repository.
pub fn matches_reference(pattern: &str, repo: &str, tag: &str) -> bool {
    let has_tag = pattern
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    if has_tag {
        glob(pattern.as_bytes(), format!("{repo}:{tag}").as_bytes())
    } else {
        glob(pattern.as_bytes(), repo.as_bytes())
    }
}

fn created(config: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    config["created"].as_str().and_then(when::parse)
}

fn config_of(img: &StoredImage) -> Result<Value> {
    serde_json::from_slice(&img.config).context("the stored image config is not valid JSON")
}

/// One `images` row, as `{{json .}}` shows it.
fn row(
    img: &StoredImage,
    name: Option<&str>,
    no_trunc: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value> {
    let config = config_of(img)?;
    let (repo, tag) = name.map_or(("<none>".into(), "<none>".into()), split_name);
    let id = if no_trunc {
        img.config_digest.clone()
    } else {
        short_id(&img.config_digest).to_string()
    };
    let t = created(&config);
    Ok(json!({
        "ID": id,
        "Repository": repo,
        "Tag": tag,
        "Digest": img.manifest_digest,
        "CreatedAt": t.map(when::at).unwrap_or_default(),
        "CreatedSince": t.map(|t| when::since(t, now)).unwrap_or_else(|| "N/A".into()),
        "Size": human_size(img.layers.iter().map(|l| l.size).sum()),
    }))
}

/// docker's column names.
fn header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "CreatedBy" => "CREATED BY".into(),
        other => other.to_uppercase(),
    }
}

fn print_rows(format: &str, rows: &[Value]) -> Result<()> {
    let t = template::parse(format).map_err(anyhow::Error::msg)?;
    template::print(
        &t.render_all(rows, header)
            .map_err(|e| anyhow!("--format {format:?}: {e}"))?,
    )
}

/// Lists the stored images as docker does: a row per name, newest first.
pub fn images(global: &Global, images: &Images) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let now = chrono::Utc::now();
    let mut rows: Vec<(i64, Value)> = Vec::new();
    let indexes = store.indexes()?;
    // An index's platform images are listed through it (as docker lists an index once),
    // unless `-a` asks for them.
    let in_index = |digest: &str| {
        indexes
            .iter()
            .any(|i| i.manifests.iter().any(|(d, _)| d == digest))
    };
    for img in store.images()? {
        if images.dangling.is_some_and(|d| d != img.tags.is_empty()) {
            continue;
        }
        if !images.all && img.tags.is_empty() && in_index(&img.manifest_digest) {
            continue;
        }
        let names: Vec<Option<&str>> = if img.tags.is_empty() {
            vec![None]
        } else {
            img.tags.iter().map(|t| Some(t.as_str())).collect()
        };
        for name in names {
            let r = row(&img, name, images.no_trunc, now)?;
            let (repo, tag) = (
                r["Repository"].as_str().unwrap_or(""),
                r["Tag"].as_str().unwrap_or(""),
            );
            let wanted = images.references.is_empty()
                || images
                    .references
                    .iter()
                    .any(|p| matches_reference(p, repo, tag));
            if wanted {
                let secs = created(&config_of(&img)?).map_or(0, |t| t.timestamp());
                rows.push((secs, r));
            }
        }
    }
    // Image indexes (builds for several platforms): the index digest, the platforms where
    // the size goes.
    for index in &indexes {
        for t in &index.tags {
            let (repo, tag) = split_name(t);
            let wanted = images.references.is_empty()
                || images
                    .references
                    .iter()
                    .any(|p| matches_reference(p, &repo, &tag));
            if !wanted || images.dangling == Some(true) {
                continue;
            }
            let id = if images.no_trunc {
                index.digest.clone()
            } else {
                short_id(&index.digest).to_string()
            };
            rows.push((
                0,
                json!({
                    "ID": id,
                    "Repository": repo,
                    "Tag": tag,
                    "Digest": index.digest,
                    "CreatedAt": "",
                    "CreatedSince": "N/A",
                    "Size": format!("index: {}", index.platform_names().join(",")),
                }),
            ));
        }
    }
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1["Repository"].as_str().cmp(&b.1["Repository"].as_str()))
            .then_with(|| a.1["Tag"].as_str().cmp(&b.1["Tag"].as_str()))
    });
    let rows: Vec<Value> = rows.into_iter().map(|(_, r)| r).collect();
    if images.quiet {
        let mut seen = std::collections::HashSet::new();
        let mut ids = String::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default();
            if seen.insert(id.to_string()) {
                ids.push_str(&format!("{id}\n"));
            }
        }
        template::print(&ids)?;
        return Ok(ExitCode::SUCCESS);
    }
    let default = if images.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_rows(images.format.as_deref().unwrap_or(default), &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn find(store: &Store, global: &Global, name: &str) -> Result<StoredImage> {
    store.image(name)?.ok_or_else(|| {
        anyhow!(
            "no image {name:?} in {}; `rbuild images` lists them",
            global.root.display()
        )
    })
}

/// docker's `image inspect` object for one image (plus rbuild's `ManifestDigest`, `Layers`
/// and the whole config as `ImageConfig`).
fn inspect_object(img: &StoredImage) -> Result<Value> {
    let config = config_of(img)?;
    let mut digests: Vec<String> = img
        .tags
        .iter()
        .map(|t| format!("{}@{}", split_name(t).0, img.manifest_digest))
        .collect();
    digests.dedup();
    let comment = config["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|h| h["comment"].as_str())
        .unwrap_or("");
    Ok(json!({
        "Id": img.config_digest,
        "RepoTags": img.tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": comment,
        "Created": config["created"],
        "DockerVersion": "",
        "Author": config["author"].as_str().unwrap_or(""),
        "Config": config["config"],
        "Architecture": config["architecture"],
        "Variant": config["variant"],
        "Os": config["os"],
        "Size": img.layers.iter().map(|l| l.size).sum::<u64>(),
        "RootFS": {"Type": "layers", "Layers": config["rootfs"]["diff_ids"]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "ManifestDigest": img.manifest_digest,
        "Layers": img.layers,
        "ImageConfig": config,
    }))
}

/// An image index (a build for several platforms) as `inspect` shows it.
fn index_object(index: &rbuild_cache::index::StoredIndex) -> Value {
    let manifests: Vec<Value> = index
        .manifests
        .iter()
        .map(|(d, p)| json!({"Digest": d, "Platform": rbuild_cache::registry::platform::name(p)}))
        .collect();
    json!({
        "Id": index.digest,
        "RepoTags": index.tags,
        "MediaType": "application/vnd.oci.image.index.v1+json",
        "Platforms": index.platform_names(),
        "Manifests": manifests,
    })
}

/// Prints the images as a JSON array (docker's shape), or each with `--format`. Every
/// name is looked up before anything is printed; the missing ones are named together.
pub fn inspect(global: &Global, inspect: &Inspect) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &inspect.images {
        if let Some(index) = store.index(name)? {
            found.push(index_object(&index));
            continue;
        }
        match store.image(name)? {
            Some(img) => found.push(inspect_object(&img)?),
            None => missing.push(name.as_str()),
        }
    }
    match &inspect.format {
        Some(f) => print_rows(f, &found)?,
        None => template::print(&format!("{}\n", serde_json::to_string_pretty(&found)?))?,
    }
    match missing.as_slice() {
        [] => Ok(ExitCode::SUCCESS),
        [one] => bail!(
            "no image {one:?} in {}; `rbuild images` lists them",
            global.root.display()
        ),
        many => bail!(
            "no images {} in {}; `rbuild images` lists them",
            many.join(", "),
            global.root.display()
        ),
    }
}

/// An image's history, newest step first, as `docker history` prints it.
pub fn history(global: &Global, history: &History) -> Result<ExitCode> {
    let store = store::open(&global.root)?;
    let img = find(&store, global, &history.image)?;
    let config = config_of(&img)?;
    let now = chrono::Utc::now();
    let entries = config["history"].as_array().cloned().unwrap_or_default();
    let mut layers = img.layers.iter();
    let mut rows = Vec::new();
    for h in &entries {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers.next().map_or(0, |l| l.size)
        };
        let t = h["created"].as_str().and_then(when::parse);
        let mut by = h["created_by"].as_str().unwrap_or("").to_string();
        if !history.no_trunc && by.chars().count() > 45 {
            by = format!("{}…", by.chars().take(44).collect::<String>());
        }
        rows.push(json!({
            "ID": "<missing>",
            "CreatedAt": t.map(|t| t.to_rfc3339()).unwrap_or_default(),
            "CreatedSince": t.map(|t| when::since(t, now)).unwrap_or_else(|| "N/A".into()),
            "CreatedBy": by,
            "Size": if history.human { human_size(size) } else { size.to_string() },
            "Comment": h["comment"].as_str().unwrap_or(""),
        }));
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = json!(if history.no_trunc {
            img.config_digest.clone()
        } else {
            short_id(&img.config_digest).to_string()
        });
    }
    if history.quiet {
        let ids: String = rows
            .iter()
            .map(|r| format!("{}\n", r["ID"].as_str().unwrap_or_default()))
            .collect();
        template::print(&ids)?;
        return Ok(ExitCode::SUCCESS);
    }
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    let format = history.format.as_deref().unwrap_or(default);
    let format = if history.format.is_none() && !history.human {
        "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    } else {
        format
    };
    print_rows(format, &rows)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_like_docker() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(split_name("a/b:1"), ("a/b".into(), "1".into()));
        assert_eq!(split_name("r:5000/b"), ("r:5000/b".into(), "<none>".into()));
    }

    #[test]
    fn reference_patterns() {
        assert!(matches_reference("busybox", "busybox", "latest"));
        assert!(matches_reference("busy*", "busybox", "latest"));
        assert!(matches_reference("busybox:l*", "busybox", "latest"));
        assert!(!matches_reference("busybox:1", "busybox", "latest"));
        assert!(!matches_reference("*", "me/app", "1"));
        assert!(matches_reference("*/app", "me/app", "1"));
        assert!(matches_reference("r:5000/*", "r:5000/x", "1"));
    }
}
