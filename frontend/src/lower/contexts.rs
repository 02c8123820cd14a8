//! Named build contexts (`--build-context NAME=…`): which names of a Dockerfile they
//! answer, and the vertex a directory context becomes. BuildKit's rules: a context named
//! like a stage replaces that stage (its instructions are not lowered); otherwise a
//! `FROM`, `COPY --from` or `RUN --mount from=` name that is not a stage is looked up
//! among the contexts before it is taken for an image. A name is compared in Docker's
//! short form without `:latest`, so `FROM alpine`, `alpine:latest` and
//! `docker.io/library/alpine` all find `--build-context alpine=…`.

use super::Lowerer;
use super::refs::FromRef;
use super::stages::Base;
use rbuild_graph::{Op, VertexId, VertexMeta};
use rbuild_reference::{Reference, familiar_name};

/// What one `--build-context NAME=…` gives lowering (the CLI reads or imports the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory, with its own `.dockerignore` patterns; its files are hashed by
    /// content like the main context's.
    Dir { exclude: Vec<String> },
    /// An image: `docker-image://REF` (a normalized reference), or an `oci-layout://` the
    /// CLI imported into the store (its manifest digest).
    Image { reference: String },
    /// `docker-image://scratch`: the empty filesystem.
    Scratch,
}

/// The prefix of a named directory context's `Op::Local` name (the main context is
/// `context`), so no named context can be mistaken for it.
pub const LOCAL_PREFIX: &str = "context:";

/// `name` as BuildKit looks it up: Docker's short form, without `:latest`.
pub fn context_key(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) => {
            let full = r.to_string();
            let short = familiar_name(&full);
            short.strip_suffix(":latest").unwrap_or(short).to_string()
        }
        Err(_) => name.to_string(),
    }
}

impl Lowerer<'_> {
    /// The named context `name` finds, by its key as given on the command line.
    fn named_context(&self, name: &str) -> Option<(String, NamedContext)> {
        let ctxs = &self.opts.named_contexts;
        if ctxs.is_empty() {
            return None;
        }
        let found = ctxs
            .get_key_value(name)
            .or_else(|| ctxs.get_key_value(&context_key(name)));
        found.map(|(k, v)| (k.clone(), v.clone()))
    }

    /// The base a named context gives a stage `FROM name`, if there is one.
    pub(super) fn context_base(&self, name: &str) -> Option<Base> {
        self.named_context(name).map(|(key, c)| match c {
            NamedContext::Dir { .. } => Base::Local(key),
            NamedContext::Image { reference } => Base::Image(reference),
            NamedContext::Scratch => Base::Scratch,
        })
    }

    /// What a `--from=name` reads when a named context answers it.
    pub(super) fn context_ref(&self, name: &str) -> Option<FromRef> {
        self.named_context(name).map(|(key, c)| match c {
            NamedContext::Dir { .. } => FromRef::Local(key),
            NamedContext::Image { reference } => FromRef::Image(reference),
            NamedContext::Scratch => FromRef::Scratch,
        })
    }

    /// The vertex of the named directory context `key`, added once.
    pub(super) fn named_local_vertex(&mut self, key: &str) -> VertexId {
        let exclude = match self.opts.named_contexts.get(key) {
            Some(NamedContext::Dir { exclude }) => exclude.clone(),
            _ => Vec::new(),
        };
        self.graph.add(
            Op::Local {
                name: format!("{LOCAL_PREFIX}{key}"),
                exclude,
            },
            vec![],
            VertexMeta {
                description: format!("[context {key}] load from client"),
                ..Default::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::context_key;

    #[test]
    fn keys_are_short_names_without_latest() {
        assert_eq!(context_key("alpine"), "alpine");
        assert_eq!(context_key("alpine:latest"), "alpine");
        assert_eq!(context_key("docker.io/library/alpine"), "alpine");
        assert_eq!(context_key("alpine:3.20"), "alpine:3.20");
        assert_eq!(context_key("127.0.0.1:5000/x/y"), "127.0.0.1:5000/x/y");
        assert_eq!(context_key("Not A Ref"), "Not A Ref");
    }
}
