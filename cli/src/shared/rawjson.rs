//! `--progress=rawjson`: each solver event as one line of JSON in BuildKit's `SolveStatus`
//! shape (`vertexes` with `digest`, `inputs`, `name`, `started`, `completed`, `cached`,
//! `error`; `logs` with `vertex`, `stream`, base64 `data`, `timestamp`; `warnings` with a
//! base64 `short`), so tools that read buildx's raw JSON read rbuild's. A vertex's
//! `digest` is its cache key written as `sha256:` and 64 hex digits (rbuild keys are
//! blake3: the text names the vertex, it is no hash of anything a consumer can check).
//! rbuild's cache-miss reasons go out as log lines (stream 2) beginning `CACHE MISS:`.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// What rawjson says of one vertex.
pub struct VertexInfo<'a> {
    pub digest: &'a str,
    pub inputs: &'a [String],
    pub name: &'a str,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A `vertexes` entry: started, and maybe completed (cached, failed).
pub fn vertex(
    v: &VertexInfo,
    started: DateTime<Utc>,
    completed: Option<DateTime<Utc>>,
    cached: bool,
    error: Option<&str>,
) -> Value {
    let mut o = json!({
        "digest": v.digest,
        "name": v.name,
        "started": time(started),
    });
    if !v.inputs.is_empty() {
        o["inputs"] = json!(v.inputs);
    }
    if let Some(c) = completed {
        o["completed"] = json!(time(c));
    }
    if cached {
        o["cached"] = json!(true);
    }
    if let Some(e) = error {
        o["error"] = json!(e);
    }
    json!({ "vertexes": [o] })
}

/// A `logs` entry: `stream` 1 is stdout, 2 stderr.
pub fn log(digest: &str, stream: u8, data: &[u8], at: DateTime<Utc>) -> Value {
    json!({ "logs": [{
        "vertex": digest,
        "stream": stream,
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "timestamp": time(at),
    }]})
}

/// A `warnings` entry.
pub fn warning(digest: &str, message: &str) -> Value {
    json!({ "warnings": [{
        "vertex": digest,
        "level": 1,
        "short": base64::engine::general_purpose::STANDARD.encode(message),
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkits_shapes() {
        let t = DateTime::parse_from_rfc3339("2026-12-04T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let inputs = vec!["sha256:aa".to_string()];
        let v = VertexInfo {
            digest: "sha256:bb",
            inputs: &inputs,
            name: "[2/2] RUN true",
        };
        let started = vertex(&v, t, None, false, None);
        assert_eq!(
            started.to_string(),
            r#"{"vertexes":[{"digest":"sha256:bb","inputs":["sha256:aa"],"name":"[2/2] RUN true","started":"2026-12-04T00:00:00.000000000Z"}]}"#
        );
        let failed = vertex(&v, t, Some(t), false, Some("exit code: 1"));
        assert_eq!(failed["vertexes"][0]["error"], "exit code: 1");
        assert!(failed["vertexes"][0].get("cached").is_none());
        assert_eq!(
            vertex(&v, t, Some(t), true, None)["vertexes"][0]["cached"],
            true
        );
        let l = log("sha256:bb", 1, b"hi\n", t);
        assert_eq!(l["logs"][0]["data"], "aGkK");
        assert_eq!(warning("sha256:bb", "w")["warnings"][0]["short"], "dw==");
    }
}
