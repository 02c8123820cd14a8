//! `--secret` and `RUN --mount=type=secret` through the rbuild binary: the value reaches
//! the step as a file (owner and mode as asked) or a variable, and no byte of it reaches
//! the store, an exported cache, an output archive or the progress output; a changed
//! value keeps the cache, as in BuildKit; a missing secret is skipped or, when required,
//! names its id and line. Needs root and busybox-static.

use rbuild_tests::{Env, executed, plain_steps};
use std::io::Read;
use std::path::Path;
use std::process::Output;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A value no file of the build has by chance.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("rbuild-{tag}-{}-{nanos}-do-not-leak", std::process::id())
}

fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Where in `data` (read as is, gunzipped when it is gzip, entry by entry when it is a
/// tar) one of `needles` occurs: a description of each hit.
fn find_in(data: &[u8], needles: &[&[u8]], what: &str, hits: &mut Vec<String>) {
    for n in needles {
        if data.windows(n.len()).any(|w| w == *n) {
            hits.push(format!("{what} holds {:?}", String::from_utf8_lossy(n)));
        }
    }
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        if flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut plain)
            .is_ok()
        {
            find_in(&plain, needles, &format!("{what} (gunzipped)"), hits);
        }
    } else if data.len() > 262 && &data[257..262] == b"ustar" {
        let mut archive = tar::Archive::new(data);
        if let Ok(entries) = archive.entries() {
            for e in entries.flatten() {
                let name = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let mut e = e;
                let mut body = Vec::new();
                if e.read_to_end(&mut body).is_ok() {
                    find_in(&body, needles, &format!("{what}:{name}"), hits);
                }
            }
        }
    }
}

/// Every regular file under `dir`, searched with [`find_in`].
fn find_under(dir: &Path, needles: &[&[u8]], hits: &mut Vec<String>) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_file() {
            let data = std::fs::read(e.path()).unwrap_or_default();
            find_in(&data, needles, &e.path().display().to_string(), hits);
        }
    }
}

const DOCKERFILE: &str = "\
FROM busybox:latest
RUN --mount=type=secret,id=tok,required=true sha256sum /run/secrets/tok | cut -c1-64 > /tok.sha
RUN --mount=type=secret,id=tok,env=TOK test ! -e /run/secrets/tok && printf %s \"$TOK\" | sha256sum | cut -c1-64 > /env.sha
RUN --mount=type=secret,id=fromenv,target=/etc/t,mode=0440,uid=1000,gid=2000 stat -c '%a %u %g' /etc/t > /stat.txt && sha256sum /etc/t | cut -c1-64 > /fromenv.sha && (cat /etc/t > /etc/t) 2>/dev/null || echo ro >> /stat.txt
RUN --mount=type=secret,id=RBUILD_TEST_BARE_SECRET sha256sum /run/secrets/RBUILD_TEST_BARE_SECRET | cut -c1-64 > /bare.sha
RUN --mount=type=secret,id=absent ls -A /run > /absent.txt 2>&1; echo \"exit $?\" >> /absent.txt
";

#[test]
fn a_secret_reaches_its_step_and_no_byte_of_it_reaches_anything_else() {
    let env = Env::new();
    env.busybox_base();
    let (tok, from_env, bare) = (unique("file"), unique("env"), unique("bare"));
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    let secret_file = env.work.path().join("tok.txt");
    std::fs::write(&secret_file, &tok).unwrap();
    let (cache, oci, docker) = (
        env.work.path().join("cache"),
        env.work.path().join("out.oci.tar"),
        env.work.path().join("out.docker.tar"),
    );
    let out = env
        .cmd(&[
            "build",
            "--progress=plain",
            "-t",
            "sec:1",
            "--secret",
            &format!("id=tok,src={}", p(&secret_file)),
            "--secret",
            "type=env,id=fromenv,src=RBUILD_TEST_SECRET_VAR",
            "--secret",
            "id=RBUILD_TEST_BARE_SECRET",
            "--cache-to",
            &format!("type=local,dest={},mode=max", p(&cache)),
            "--output",
            &format!("type=oci,dest={}", p(&oci)),
            "--output",
            &format!("type=docker,dest={}", p(&docker)),
            p(&ctx),
        ])
        .env("RBUILD_TEST_SECRET_VAR", &from_env)
        .env("RBUILD_TEST_BARE_SECRET", &bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let rootfs = env.umoci_unpack("sec:1");
    let read = |f: &str| std::fs::read_to_string(rootfs.join(f)).unwrap();
    assert_eq!(read("tok.sha").trim(), sha256_hex(tok.as_bytes()));
    assert_eq!(read("env.sha").trim(), sha256_hex(tok.as_bytes()));
    assert_eq!(read("fromenv.sha").trim(), sha256_hex(from_env.as_bytes()));
    assert_eq!(read("stat.txt"), "440 1000 2000\nro\n");
    assert_eq!(read("bare.sha").trim(), sha256_hex(bare.as_bytes()));
    // An optional secret the build was not given: the step ran without it, and no
    // mountpoint was left behind by any step.
    assert_eq!(
        read("absent.txt"),
        "ls: /run: No such file or directory\nexit 1\n"
    );
    assert!(!rootfs.join("run").exists() && !rootfs.join("etc/t").exists());

    let needles: [&[u8]; 3] = [tok.as_bytes(), from_env.as_bytes(), bare.as_bytes()];
    let mut hits = Vec::new();
    find_under(env.root(), &needles, &mut hits);
    find_under(&cache, &needles, &mut hits);
    for archive in [&oci, &docker] {
        let data = std::fs::read(archive).unwrap();
        find_in(&data, &needles, &archive.display().to_string(), &mut hits);
    }
    find_in(&out.stdout, &needles, "stdout", &mut hits);
    find_in(&out.stderr, &needles, "the progress output", &mut hits);
    assert!(hits.is_empty(), "secret bytes found: {hits:#?}");
    // The search looks inside gzip and tar: the image's own files are found there.
    let mut control = Vec::new();
    find_in(
        &std::fs::read(&oci).unwrap(),
        &[b"440 1000 2000"],
        "oci",
        &mut control,
    );
    assert!(!control.is_empty(), "the search reads layers");
}

#[test]
fn a_changed_secret_value_keeps_the_cache() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox:latest\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /n\n",
        )],
    );
    let secret_file = env.work.path().join("tok.txt");
    let build = |value: &str| {
        std::fs::write(&secret_file, value).unwrap();
        let spec = format!("id=tok,src={}", p(&secret_file));
        let out = env.ok(&[
            "build",
            "--progress=plain",
            "-t",
            "c:1",
            "--secret",
            &spec,
            p(&ctx),
        ]);
        plain_steps(&String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(executed(&build("first").to_vec(), "RUN").len(), 1);
    let again = build("a different value");
    assert!(
        executed(&again, "RUN").is_empty(),
        "a changed value does not invalidate the step: {again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(env.umoci_unpack("c:1").join("n"))
            .unwrap()
            .trim(),
        "5"
    );
}

#[test]
fn missing_and_bad_secrets_say_which_and_where() {
    let env = Env::new();
    env.busybox_base();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox:latest\nRUN echo first\nRUN --mount=type=secret,id=npm,required=true cat /run/secrets/npm\n",
        )],
    );
    let out = env.run(&["build", "--progress=plain", p(&ctx)]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("Dockerfile:3: [3/3] RUN --mount=type=secret,id=npm,required=true cat /run/secrets/npm: secret \"npm\" is required but was not provided: pass --secret id=npm,src=FILE (or id=npm,env=VARIABLE)"),
        "{t}"
    );

    // Bad --secret values fail before anything is built.
    let missing = env.work.path().join("nope");
    for (flag, message) in [
        (
            format!("id=npm,src={}", p(&missing)),
            format!(
                "secret \"npm\": cannot read {}: No such file or directory",
                p(&missing)
            ),
        ),
        (
            "src=/etc/hostname".to_string(),
            "--secret: the id is missing".to_string(),
        ),
        (
            "id=npm,type=ssh".to_string(),
            "unsupported secret type \"ssh\"".to_string(),
        ),
    ] {
        let out = env.run(&["build", "--progress=plain", "--secret", &flag, p(&ctx)]);
        assert!(!out.status.success(), "{flag}");
        let t = text(&out);
        assert!(t.contains(&message), "{flag}: {t}");
        assert!(!t.contains("#1 "), "{flag}: nothing ran: {t}");
    }
}
