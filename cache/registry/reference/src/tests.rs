//! The parser's behaviour: Docker's normalisation, what it refuses and why, and one test per
//! case where the frontend's former parser and the registry client's disagreed (now both
//! follow Docker).

use super::*;

fn p(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The full form, or why not (the reason alone).
fn n(s: &str) -> Result<String, ReferenceError> {
    Reference::parse(s)
        .map(|r| r.to_string())
        .map_err(|e| e.reason)
}

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn docker_hub_normalisation() {
    let r = p("busybox");
    assert_eq!(r.registry, "docker.io");
    assert_eq!(r.repository, "library/busybox");
    assert_eq!(r.tag.as_deref(), Some("latest"));
    assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    assert_eq!(r.api_host(), "registry-1.docker.io");
    assert_eq!(p("user/app:1.0").repository, "user/app");
    assert_eq!(p("docker.io/busybox").repository, "library/busybox");
    assert_eq!(p("index.docker.io/library/alpine").registry, "docker.io");
    assert_eq!(
        n("index.docker.io/alpine").unwrap(),
        "docker.io/library/alpine:latest"
    );
    // a bare "localhost" is an image name, not a host
    assert_eq!(p("localhost").repository, "library/localhost");
}

#[test]
fn normalised_forms() {
    assert_eq!(n("alpine").unwrap(), "docker.io/library/alpine:latest");
    assert_eq!(n("alpine:3.19").unwrap(), "docker.io/library/alpine:3.19");
    assert_eq!(
        n("localhost:5000/me/app").unwrap(),
        "localhost:5000/me/app:latest"
    );
    assert_eq!(n("ghcr.io/a/b:v1").unwrap(), "ghcr.io/a/b:v1");
    assert_eq!(
        n(&format!("busybox@{D}")).unwrap(),
        format!("docker.io/library/busybox@{D}")
    );
    assert_eq!(n("foo--bar").unwrap(), "docker.io/library/foo--bar:latest");
}

#[test]
fn hosts_ports_tags_digests() {
    let r = p("127.0.0.1:5000/team/app:v1.2");
    assert_eq!(r.registry, "127.0.0.1:5000");
    assert_eq!(r.repository, "team/app");
    assert_eq!(r.tag.as_deref(), Some("v1.2"));
    let r = p("localhost/x");
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str()),
        ("localhost", "x")
    );
    let r = p("host:5000/repo");
    assert_eq!(r.tag.as_deref(), Some("latest"));
    assert_eq!(r.registry, "host:5000");
    let r = p(&format!("repo@{D}"));
    assert_eq!(r.tag, None);
    assert_eq!(r.digest.as_deref(), Some(D));
    assert_eq!(r.manifest_ref(), D);
    let r = p(&format!("quay.io/a/b:t@{D}"));
    assert_eq!(r.tag.as_deref(), Some("t"));
    assert_eq!(r.manifest_ref(), D);
    assert_eq!(r.to_string(), format!("quay.io/a/b:t@{D}"));
    assert_eq!(p("Registry/app").registry, "Registry");
    assert_eq!(p("[::1]:5000/app").registry, "[::1]:5000");
    assert_eq!(p("[fe80::1]/app").registry, "[fe80::1]");
    assert_eq!(p("a.b/c__d/e-f--g.h_i").repository, "c__d/e-f--g.h_i");
    assert_eq!(
        p("my-registry.example.com:443/x").registry,
        "my-registry.example.com:443"
    );
}

#[test]
fn tags_follow_dockers_ascii_grammar() {
    let long = "a".repeat(128);
    assert!(Reference::parse(&format!("img:{long}")).is_ok());
    assert_eq!(n(&format!("img:{long}a")), Err(ReferenceError::TagTooLong));
    assert!(Reference::parse("img:v1.2_3-x").is_ok());
    assert!(matches!(n("img:.v1"), Err(ReferenceError::Tag(_))));
    assert!(matches!(n("img:tä"), Err(ReferenceError::Tag(_))));
}

#[test]
fn bad_references_are_explained() {
    for (input, needle) in [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("repo:", "empty tag"),
        ("repo:-x", "invalid tag"),
        ("repo@sha256:abc", "64"),
        ("repo@md5:abc", "unsupported digest algorithm"),
        ("a//b", "empty path component"),
        ("host:5000/", "empty repository"),
        ("a/b_", "invalid repository path component"),
        ("a/b___c", "invalid repository path component"),
        (" busybox", "whitespace"),
        ("host:port/x", "invalid port"),
        ("Build", "lowercase"),
        ("my stage", "invalid repository path component"),
        ("a:b:c", "invalid repository path component"),
        ("Bu!ld", "lowercase"),
    ] {
        let err = Reference::parse(input).expect_err(input).to_string();
        assert!(err.contains(needle), "{input:?}: {err}");
        assert!(err.contains(&format!("{input:?}")), "{err}");
    }
    let long = format!("a/{}", "b".repeat(300));
    assert!(Reference::parse(&long).is_err());
}

#[test]
fn tags_split_after_the_last_slash_and_familiar_names() {
    assert_eq!(split_tag("a:b"), ("a", Some("b")));
    assert_eq!(
        split_tag("localhost:5000/x/y:1"),
        ("localhost:5000/x/y", Some("1"))
    );
    assert_eq!(split_tag("localhost:5000/x"), ("localhost:5000/x", None));
    assert_eq!(split_tag("x:"), ("x", Some("")));
    assert_eq!(familiar_name("docker.io/library/busybox:1"), "busybox:1");
    assert_eq!(familiar_name("index.docker.io/user/app"), "user/app");
    assert_eq!(familiar_name("ghcr.io/x/y"), "ghcr.io/x/y");
}

#[test]
fn registry_normalisation_for_login() {
    assert_eq!(
        normalize_registry("https://index.docker.io/v1/"),
        "docker.io"
    );
    assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
    assert_eq!(
        normalize_registry("http://127.0.0.1:5000/v2/"),
        "127.0.0.1:5000"
    );
    assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
}

// Where the two former parsers disagreed, one test each; Docker's behaviour wins.

/// The registry client folded Docker Hub's API host into `docker.io` (and so added
/// `library/`); the frontend kept it, as Docker does: only `index.docker.io` is an alias.
#[test]
fn docker_hubs_api_host_is_not_an_alias() {
    assert_eq!(
        n("registry-1.docker.io/library/alpine").unwrap(),
        "registry-1.docker.io/library/alpine:latest"
    );
    let r = p("registry-1.docker.io/alpine:3");
    assert_eq!(r.registry, "registry-1.docker.io");
    assert_eq!(r.repository, "alpine");
    assert_eq!(r.api_host(), "registry-1.docker.io");
}

/// The registry client took any host made of letters, digits and `.-:[]_`; the frontend,
/// like Docker, only DNS names, IPv4 and bracketed IPv6, with an optional numeric port.
#[test]
fn hosts_outside_dockers_grammar_are_refused() {
    for host in [
        "a_b.io",
        "-a.io",
        "a-.io",
        "a..b",
        ".a.io",
        "[zz]:5000",
        "[]:5000",
        "::1",
        "a:1:2",
        "[::1]x",
        "[::1",
    ] {
        let input = format!("{host}/x");
        match n(&input) {
            Err(ReferenceError::Host(h) | ReferenceError::Port(h)) => assert_eq!(h, host),
            other => panic!("{input:?}: {other:?}"),
        }
    }
    assert!(matches!(n("a.io:/x"), Err(ReferenceError::Port(_))));
    assert!(matches!(n("a.io:5x/x"), Err(ReferenceError::Port(_))));
}

/// The frontend took any algorithm and 32+ hex digits of either case; Docker (go-digest)
/// wants a registered algorithm with its exact length in lowercase hex. rbuild verifies
/// sha256 only, so `sha512` (which Docker takes) is refused by name.
#[test]
fn digests_are_sha256_in_lowercase_hex() {
    let upper = format!("busybox@sha256:{}", "A".repeat(64));
    assert!(matches!(
        n(&upper),
        Err(ReferenceError::Digest(DigestError::Hex(_)))
    ));
    let short = format!("busybox@sha256:{}", "a".repeat(32));
    assert!(matches!(
        n(&short),
        Err(ReferenceError::Digest(DigestError::Hex(_)))
    ));
    let sha512 = format!("busybox@sha512:{}", "a".repeat(128));
    assert_eq!(
        n(&sha512),
        Err(ReferenceError::Digest(DigestError::Algorithm(
            "sha512".into()
        )))
    );
    let md5 = format!("busybox@md5:{}", "a".repeat(32));
    assert!(matches!(
        n(&md5),
        Err(ReferenceError::Digest(DigestError::Algorithm(_)))
    ));
}

/// The frontend limited the name as written to 255 characters, the registry client the
/// normalised `host/path`; Docker limits the normalised path (`library/` counts, the host
/// does not).
#[test]
fn the_length_limit_is_on_the_normalised_path() {
    let official = "a".repeat(250); // library/ + 250 = 258
    assert_eq!(n(&official), Err(ReferenceError::NameTooLong));
    let hosted = format!("registry.example.com/{}", "a".repeat(250));
    assert_eq!(
        n(&hosted).unwrap(),
        format!("registry.example.com/{}:latest", "a".repeat(250))
    );
    let at_limit = format!("u/{}", "a".repeat(253));
    assert!(Reference::parse(&at_limit).is_ok());
    let over = format!("u/{}", "a".repeat(254));
    assert_eq!(n(&over), Err(ReferenceError::NameTooLong));
}
