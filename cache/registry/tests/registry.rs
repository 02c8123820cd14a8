//! The registry client against a real Debian `docker-registry` (no auth,
//! htpasswd, token auth with a token service run by the test), plus fake
//! loopback servers for fault injection only (digest mismatch, 503, resets).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rbuild_registry::{
    ClientOptions, Credential, CredentialSource, MediaType, PushStatus, Reference, RegistryClient,
    RegistryError, RetryPolicy, platform,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

use rbuild_tests::Registry;

/// `HOST/repo:tag` of a test registry, parsed.
fn reference(reg: &Registry, repo_tag: &str) -> Reference {
    Reference::parse(&format!("{}/{repo_tag}", reg.host)).expect("reference")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn client(credentials: CredentialSource) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        credentials,
        retry: fast_retry(),
        ..ClientOptions::default()
    })
    .expect("client")
}

fn basic(user: &str, pass: &str) -> Credential {
    Credential::Basic {
        username: user.into(),
        password: pass.into(),
    }
}

/// A real image: one gzip tar layer with a file, its config and manifest.
struct TestImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn make_image(content: &[u8], arch: &str) -> TestImage {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "hello.txt", content).expect("tar");
    let raw = tar.into_inner().expect("tar finish");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("gzip");
    let layer = gz.finish().expect("gzip finish");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(&raw)]},
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest,
        "config": {"mediaType": MediaType::ImageConfig, "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": MediaType::ImageLayerGzip, "digest": sha(&layer), "size": layer.len()}],
    }))
    .expect("json");
    TestImage {
        layer,
        config,
        manifest,
    }
}

fn write_blob(dir: &Path, data: &[u8]) -> PathBuf {
    let p = dir.join(hex::encode(&Sha256::digest(data)[..8]));
    std::fs::write(&p, data).expect("write blob");
    p
}

async fn push_image(c: &RegistryClient, r: &Reference, img: &TestImage, work: &Path) -> String {
    for blob in [&img.layer, &img.config] {
        let path = write_blob(work, blob);
        c.push_blob(r, &sha(blob), blob.len() as u64, &path)
            .await
            .expect("push blob");
    }
    c.push_manifest(r, &MediaType::ImageManifest, &img.manifest)
        .await
        .expect("push manifest")
}

async fn pull_and_check(c: &RegistryClient, r: &Reference, img: &TestImage, work: &Path) {
    let res = c
        .resolve(r, &platform::of("linux", "amd64", None))
        .await
        .expect("resolve");
    assert_eq!(res.manifest_digest, sha(&img.manifest));
    assert_eq!(res.manifest_bytes, img.manifest);
    assert_eq!(res.media_type, MediaType::ImageManifest);
    assert_eq!(res.config.digest().to_string(), sha(&img.config));
    assert_eq!(res.layers.len(), 1);
    assert_eq!(res.layers[0].digest().to_string(), sha(&img.layer));
    assert_eq!(res.layers[0].size(), img.layer.len() as u64);
    let dest = work.join("pulled-layer");
    let n = c
        .fetch_blob(r, res.layers[0].digest().as_ref(), &dest)
        .await
        .expect("fetch blob");
    assert_eq!(n, img.layer.len() as u64);
    assert_eq!(std::fs::read(&dest).expect("read"), img.layer);
    let cfg = c
        .fetch_config(r, res.config.digest().as_ref())
        .await
        .expect("fetch config");
    assert_eq!(cfg, img.config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_registry_push_resolve_fetch_mount() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let c = client(CredentialSource::Anonymous);
    let img = make_image(b"hello from rbuild\n", "amd64");
    let r = reference(&reg, "team/app:v1");

    assert!(!c.blob_exists(&r, &sha(&img.layer)).await.unwrap());
    let digest = push_image(&c, &r, &img, work.path()).await;
    assert_eq!(digest, sha(&img.manifest));
    assert!(c.blob_exists(&r, &sha(&img.layer)).await.unwrap());
    pull_and_check(&c, &r, &img, work.path()).await;

    // HEAD gives the same digest without the body.
    let head = c.head_manifest(&r).await.unwrap().expect("tag exists");
    assert_eq!(head.digest().to_string(), digest);
    assert_eq!(head.size(), img.manifest.len() as u64);
    assert_eq!(head.media_type(), &MediaType::ImageManifest);
    assert_eq!(
        c.head_manifest(&reference(&reg, "team/app:none"))
            .await
            .unwrap(),
        None
    );

    // Progress reports reach the blob's size.
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    c.fetch_blob_with_progress(&r, &sha(&img.layer), &work.path().join("p"), &move |n| {
        s2.store(n as usize, Ordering::SeqCst)
    })
    .await
    .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), img.layer.len());

    // By digest, too.
    let by_digest = r.with_digest(&digest);
    let res = c.resolve(&by_digest, &platform::host()).await.unwrap();
    assert_eq!(res.manifest_bytes, img.manifest);

    // A second push is a no-op for blobs and yields the same manifest digest.
    let path = write_blob(work.path(), &img.layer);
    let st = c
        .push_blob(&r, &sha(&img.layer), img.layer.len() as u64, &path)
        .await
        .unwrap();
    assert_eq!(st, PushStatus::AlreadyExists);
    assert_eq!(
        c.push_manifest(&r, &MediaType::ImageManifest, &img.manifest)
            .await
            .unwrap(),
        digest
    );

    // Cross-repo mount on the same registry.
    let other = reference(&reg, "other/app:v1");
    assert!(!c.blob_exists(&other, &sha(&img.layer)).await.unwrap());
    assert!(
        c.mount_blob(&other, "team/app", &sha(&img.layer))
            .await
            .unwrap()
    );
    assert!(c.blob_exists(&other, &sha(&img.layer)).await.unwrap());
    let cfg_path = write_blob(work.path(), &img.config);
    assert_eq!(
        c.mount_or_push_blob(
            &other,
            Some("team/app"),
            &sha(&img.config),
            img.config.len() as u64,
            &cfg_path
        )
        .await
        .unwrap(),
        PushStatus::Mounted
    );
    // A mount of a blob the source does not have is declined: upload instead.
    let fresh = b"not in team/app".to_vec();
    assert!(
        !c.mount_blob(&other, "team/app", &sha(&fresh))
            .await
            .unwrap()
    );
    let fresh_path = write_blob(work.path(), &fresh);
    assert_eq!(
        c.mount_or_push_blob(
            &other,
            Some("team/app"),
            &sha(&fresh),
            fresh.len() as u64,
            &fresh_path
        )
        .await
        .unwrap(),
        PushStatus::Uploaded
    );
    c.push_manifest(&other, &MediaType::ImageManifest, &img.manifest)
        .await
        .unwrap();
    pull_and_check(&c, &other, &img, work.path()).await;

    // Unknown tag and blob: clear not-found errors naming the repository.
    let err = c
        .resolve(&reference(&reg, "team/app:nope"), &platform::host())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("team/app"), "{err}");
    let missing = sha(b"missing");
    let err = c
        .fetch_blob(&r, &missing, &work.path().join("m"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
    assert!(!work.path().join("m").exists());

    // A file that does not match its digest is refused before any upload.
    let err = c
        .push_blob(&r, &sha(b"other"), img.layer.len() as u64, &path)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refusing to push"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_registry_index_selects_platform() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let c = client(CredentialSource::Anonymous);
    let amd = make_image(b"amd64 content", "amd64");
    let arm = make_image(b"arm64 content", "arm64");
    let r = reference(&reg, "multi/app:latest");
    let amd_digest = push_image(&c, &r, &amd, work.path()).await;
    let arm_digest = push_image(&c, &r, &arm, work.path()).await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex,
        "manifests": [
            {"mediaType": MediaType::ImageManifest, "digest": arm_digest, "size": arm.manifest.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": MediaType::ImageManifest, "digest": amd_digest, "size": amd.manifest.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let index_digest = c
        .push_manifest(&r, &MediaType::ImageIndex, &index)
        .await
        .unwrap();
    let raw = c.fetch_manifest(&r).await.unwrap();
    assert_eq!(raw.bytes, index);
    assert_eq!(raw.digest, index_digest);
    assert_eq!(raw.media_type, MediaType::ImageIndex);
    let res = c
        .resolve(&r, &platform::of("linux", "amd64", None))
        .await
        .unwrap();
    assert_eq!(res.manifest_digest, amd_digest);
    assert_eq!(res.index_digest.as_deref(), Some(index_digest.as_str()));
    let res = c
        .resolve(&r, &platform::of("linux", "arm64", None))
        .await
        .unwrap();
    assert_eq!(res.manifest_digest, arm_digest);
    assert_eq!(res.layers[0].digest().to_string(), sha(&arm.layer));
    let err = c
        .resolve(&r, &platform::of("linux", "s390x", None))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/arm64/v8, linux/amd64"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_and_interrupted_push() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let c = RegistryClient::new(ClientOptions {
        credentials: CredentialSource::Anonymous,
        retry: fast_retry(),
        chunk_size: Some(1000),
        ..ClientOptions::default()
    })
    .unwrap();
    let r = reference(&reg, "chunks/blob:latest");
    let data: Vec<u8> = (0..3500u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = write_blob(work.path(), &data);
    let st = c
        .push_blob(&r, &sha(&data), data.len() as u64, &path)
        .await
        .unwrap();
    assert_eq!(st, PushStatus::Uploaded);
    let dest = work.path().join("back");
    c.fetch_blob(&r, &sha(&data), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    // A large file that is not what its digest says is hashed as it goes up and refused
    // before the commit: the registry never gets a blob under that digest.
    let mut bad = data.clone();
    bad[2000] ^= 1;
    let claimed: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
    let bad_path = work.path().join("bad");
    std::fs::write(&bad_path, &bad).unwrap();
    let err = c
        .push_blob(&r, &sha(&claimed), bad.len() as u64, &bad_path)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refusing to push"), "{err}");
    assert!(err.to_string().contains(&sha(&bad)), "{err}");
    assert!(!c.blob_exists(&r, &sha(&claimed)).await.unwrap());

    // An upload abandoned halfway (as by a killed push) does not block a new push.
    let data2: Vec<u8> = data.iter().rev().copied().collect();
    let http = reqwest::Client::new();
    let base = format!("http://{}/v2/chunks/blob/blobs/uploads/", reg.host);
    let resp = http.post(&base).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let loc = reqwest::Url::parse(&base).unwrap().join(&loc).unwrap();
    let resp = http
        .patch(loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-1499")
        .body(data2[..1500].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let path2 = write_blob(work.path(), &data2);
    assert!(!c.blob_exists(&r, &sha(&data2)).await.unwrap());
    let st = c
        .push_blob(&r, &sha(&data2), data2.len() as u64, &path2)
        .await
        .unwrap();
    assert_eq!(st, PushStatus::Uploaded);
    c.fetch_blob(&r, &sha(&data2), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data2);
}

fn htpasswd(user: &str, pass: &str) -> Vec<u8> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .expect("htpasswd (apt-get install apache2-utils)");
    assert!(out.status.success());
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_basic_auth() {
    let pw = htpasswd("user", "pass");
    let reg = Registry::start_with(
        "auth:\n  htpasswd:\n    realm: test-realm\n    path: {dir}/htpasswd\n",
        &[("htpasswd", &pw)],
    );
    let work = tempfile::tempdir().unwrap();
    let img = make_image(b"basic auth content", "amd64");
    let r = reference(&reg, "secure/app:1");

    // Anonymous: told to log in.
    let anon = client(CredentialSource::Anonymous);
    let err = anon.resolve(&r, &platform::host()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("rbuild login 127.0.0.1"), "{err}");

    // Wrong password: a clear auth error, not a retry loop.
    let wrong = client(CredentialSource::Static(vec![(
        reg.host.clone(),
        basic("user", "wrong"),
    )]));
    let path = write_blob(work.path(), &img.layer);
    let err = wrong
        .push_blob(&r, &sha(&img.layer), img.layer.len() as u64, &path)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("rejected the credentials of user \"user\""),
        "{err}"
    );

    // login verifies before storing.
    let cfg_dir = tempfile::tempdir().unwrap();
    let from_cfg = client(CredentialSource::DockerConfig(Some(
        cfg_dir.path().to_path_buf(),
    )));
    let err = from_cfg
        .login(&reg.host, "user", "wrong")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rejected"), "{err}");
    assert!(!cfg_dir.path().join("config.json").exists());
    from_cfg.login(&reg.host, "user", "pass").await.unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg_dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["auths"][&reg.host]["auth"],
        STANDARD.encode("user:pass")
    );

    // Credentials from config.json `auths` drive push and pull.
    push_image(&from_cfg, &r, &img, work.path()).await;
    pull_and_check(&from_cfg, &r, &img, work.path()).await;

    // A hand-written DOCKER_CONFIG directory works the same.
    let hand = tempfile::tempdir().unwrap();
    std::fs::write(
        hand.path().join("config.json"),
        serde_json::json!({"auths": {format!("http://{}", reg.host): {"auth": STANDARD.encode("user:pass")}}}).to_string(),
    )
    .unwrap();
    let c2 = client(CredentialSource::DockerConfig(Some(
        hand.path().to_path_buf(),
    )));
    pull_and_check(&c2, &r, &img, work.path()).await;

    // The default source honours $DOCKER_CONFIG: checked in a child process
    // (this test binary) so no environment of this process is changed.
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "docker_config_env_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("DOCKER_CONFIG", hand.path())
        .env("HOME", "/nonexistent")
        .env("RBUILD_TEST_REGISTRY", &reg.host)
        .env("RBUILD_TEST_DIGEST", sha(&img.manifest))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(from_cfg.logout(&reg.host).await.unwrap());
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg_dir.path().join("config.json")).unwrap())
            .unwrap();
    assert!(cfg["auths"].get(&reg.host).is_none());
    let err = from_cfg.resolve(&r, &platform::host()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}

/// The identity token (OAuth2 refresh token) the token service accepts.
const REFRESH_TOKEN: &str = "refresh-abc";

/// Scopes asked for, and whether the credentials were right.
type TokenRequest = (Vec<String>, bool);

/// Run by `htpasswd_registry_basic_auth` with DOCKER_CONFIG pointing at a
/// config.json that holds the registry's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by htpasswd_registry_basic_auth"]
async fn docker_config_env_child() {
    let host = std::env::var("RBUILD_TEST_REGISTRY").expect("RBUILD_TEST_REGISTRY");
    let c = client(CredentialSource::Default);
    let r = Reference::parse(&format!("{host}/secure/app:1")).unwrap();
    let res = c.resolve(&r, &platform::host()).await.unwrap();
    assert_eq!(
        res.manifest_digest,
        std::env::var("RBUILD_TEST_DIGEST").unwrap()
    );
}

/// A token service for the registry: checks basic credentials and issues RS256
/// JWTs signed by a key whose self-signed certificate is the registry's
/// rootcertbundle. Repositories under `readonly/` are granted pull only.
struct TokenService {
    url: String,
    /// (scopes requested, authenticated) per request.
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl {args:?}");
}

async fn start_token_service(dir: &Path, user: &'static str, pass: &'static str) -> TokenService {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rbuild-test-token",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
        ],
    );
    let key = ring::signature::RsaKeyPair::from_pkcs8(&std::fs::read(dir.join("key.der")).unwrap())
        .expect("rsa key");
    let cert = STANDARD.encode(std::fs::read(dir.join("cert.der")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let key = Arc::new(key);
    let rec = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (key, cert, rec) = (key.clone(), cert.clone(), rec.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                // GET with query (basic auth) or POST form (refresh-token grant).
                let query = if req.method == "POST" {
                    String::from_utf8_lossy(&req.body).into_owned()
                } else {
                    req.target
                        .split_once('?')
                        .map(|(_, q)| q.to_string())
                        .unwrap_or_default()
                };
                let pairs: Vec<(String, String)> =
                    reqwest::Url::parse(&format!("http://x/?{query}"))
                        .unwrap()
                        .query_pairs()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                let scopes: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
                    .collect();
                let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
                let refresh = pairs
                    .iter()
                    .find(|(k, _)| k == "refresh_token")
                    .map(|(_, v)| v.as_str());
                let grant_ok = pairs
                    .iter()
                    .any(|(k, v)| k == "grant_type" && v == "refresh_token");
                let authed = req.authorization.as_deref() == Some(expected.as_str())
                    || (grant_ok && refresh == Some(REFRESH_TOKEN));
                rec.lock().unwrap().push((scopes.clone(), authed));
                if (req.authorization.is_some() || refresh.is_some()) && !authed {
                    let _ = respond(
                        &mut sock,
                        401,
                        &[],
                        b"{\"details\":\"invalid credentials\"}",
                    )
                    .await;
                    return;
                }
                let access: Vec<serde_json::Value> = scopes
                    .iter()
                    .filter(|_| authed)
                    .filter_map(|s| {
                        let (typ, rest) = s.split_once(':')?;
                        let (name, actions) = rest.rsplit_once(':')?;
                        let actions: Vec<&str> = actions
                            .split(',')
                            .filter(|a| !name.starts_with("readonly/") || *a == "pull")
                            .collect();
                        Some(serde_json::json!({"type": typ, "name": name, "actions": actions}))
                    })
                    .collect();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [cert]});
                let claims = serde_json::json!({
                    "iss": "rbuild-test-issuer", "sub": if authed { user } else { "" },
                    "aud": "rbuild-test-registry", "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("{now}-{}", rec.lock().unwrap().len()), "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let mut sig = vec![0u8; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
                let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
                let _ = respond(
                    &mut sock,
                    200,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .await;
            });
        }
    });
    TokenService {
        url,
        requests,
        task,
    }
}

struct Request {
    method: String,
    target: String,
    authorization: Option<String>,
    range: Option<String>,
    /// Header lines except `Connection`.
    headers: Vec<String>,
    body: Vec<u8>,
}

/// Read one HTTP/1.1 request head (bodies are not needed by these servers).
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let mut authorization = None;
    let mut range = None;
    let mut length = 0usize;
    let mut headers = Vec::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
            if !k.eq_ignore_ascii_case("connection") {
                headers.push(l.to_string());
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Request {
        method,
        target,
        authorization,
        range,
        headers,
        body,
    })
}

async fn respond(
    sock: &mut tokio::net::TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registry_challenge_scopes_push_pull_mount() {
    let keys = tempfile::tempdir().unwrap();
    let tokens = start_token_service(keys.path(), "alice", "s3cret").await;
    let cert = std::fs::read(keys.path().join("cert.pem")).unwrap();
    let reg = Registry::start_with(
        &format!(
            "auth:\n  token:\n    realm: {}\n    service: rbuild-test-registry\n    issuer: rbuild-test-issuer\n    rootcertbundle: {{dir}}/cert.pem\n",
            tokens.url
        ),
        &[("cert.pem", &cert)],
    );
    let work = tempfile::tempdir().unwrap();
    let img = make_image(b"token auth content", "amd64");
    let r = reference(&reg, "proj/app:v1");
    let creds = CredentialSource::Static(vec![(reg.host.clone(), basic("alice", "s3cret"))]);

    // Push: challenge → token for pull,push → retry, then pull.
    let c = client(creds.clone());
    push_image(&c, &r, &img, work.path()).await;
    let seen = tokens.requests.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(s, a)| *a && s == &["repository:proj/app:pull,push".to_string()]),
        "{seen:?}"
    );
    // Tokens are cached per scope: one push needs few token requests.
    assert!(seen.len() <= 3, "{seen:?}");

    // A fresh client that only pulls asks for a pull-scoped token.
    tokens.requests.lock().unwrap().clear();
    let puller = client(creds.clone());
    pull_and_check(&puller, &r, &img, work.path()).await;
    let seen = tokens.requests.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|(s, a)| *a && s == &["repository:proj/app:pull".to_string()]),
        "{seen:?}"
    );

    // Cross-repo mount: one token with both scopes.
    tokens.requests.lock().unwrap().clear();
    let dst = reference(&reg, "proj/copy:v1");
    assert!(
        c.mount_blob(&dst, "proj/app", &sha(&img.layer))
            .await
            .unwrap()
    );
    let seen = tokens.requests.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(s, _)| s
            == &[
                "repository:proj/app:pull".to_string(),
                "repository:proj/copy:pull,push".to_string()
            ]),
        "{seen:?}"
    );
    assert!(c.blob_exists(&dst, &sha(&img.layer)).await.unwrap());

    // Scoped tokens: readonly/ grants pull only, so a push is refused clearly.
    let ro = reference(&reg, "readonly/app:v1");
    let path = write_blob(work.path(), &img.config);
    let err = c
        .push_blob(&ro, &sha(&img.config), img.config.len() as u64, &path)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Unauthorized { .. } | RegistryError::Denied { .. }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("does not grant repository:readonly/app:pull,push")
            && msg.contains("permissions on readonly/app"),
        "{msg}"
    );

    // Wrong password: the token service refuses, and the error says so.
    let wrong = client(CredentialSource::Static(vec![(
        reg.host.clone(),
        basic("alice", "nope"),
    )]));
    let err = wrong.resolve(&r, &platform::host()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("token service"), "{err}");

    // Anonymous gets an empty token; the registry refuses it: log in.
    let anon = client(CredentialSource::Anonymous);
    let err = anon.resolve(&r, &platform::host()).await.unwrap_err();
    assert!(err.to_string().contains("rbuild login"), "{err}");

    // An `identitytoken` in config.json is exchanged with a refresh-token grant.
    let idcfg = tempfile::tempdir().unwrap();
    std::fs::write(
        idcfg.path().join("config.json"),
        serde_json::json!({"auths": {reg.host.clone(): {"identitytoken": REFRESH_TOKEN}}})
            .to_string(),
    )
    .unwrap();
    tokens.requests.lock().unwrap().clear();
    let idc = client(CredentialSource::DockerConfig(Some(
        idcfg.path().to_path_buf(),
    )));
    pull_and_check(&idc, &r, &img, work.path()).await;
    let seen = tokens.requests.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(s, a)| *a && s == &["repository:proj/app:pull".to_string()]),
        "{seen:?}"
    );
    std::fs::write(
        idcfg.path().join("config.json"),
        serde_json::json!({"auths": {reg.host.clone(): {"identitytoken": "revoked"}}}).to_string(),
    )
    .unwrap();
    let idc = client(CredentialSource::DockerConfig(Some(
        idcfg.path().to_path_buf(),
    )));
    let err = idc.resolve(&r, &platform::host()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    // login against a token registry checks with the token service.
    let cfg = tempfile::tempdir().unwrap();
    let lc = client(CredentialSource::DockerConfig(Some(
        cfg.path().to_path_buf(),
    )));
    assert!(lc.login(&reg.host, "alice", "nope").await.is_err());
    lc.login(&reg.host, "alice", "s3cret").await.unwrap();
    pull_and_check(&lc, &r, &img, work.path()).await;
}

/// A fake blob server on loopback for fault injection. `plan(n, request)`
/// answers the n-th request (0-based).
#[derive(Clone)]
enum Answer {
    Status(u16),
    Body(Vec<u8>),
    /// Headers and part of the body, then the connection is cut.
    Truncated(Vec<u8>, usize),
    /// Close the connection without answering.
    Reset,
}

struct FakeServer {
    host: String,
    count: Arc<AtomicUsize>,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_server(plan: impl Fn(usize) -> Answer + Send + Sync + 'static) -> FakeServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let plan = Arc::new(plan);
    let (c2, r2) = (count.clone(), ranges.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (plan, count, ranges) = (plan.clone(), c2.clone(), r2.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                assert_eq!(req.method, "GET");
                let n = count.fetch_add(1, Ordering::SeqCst);
                ranges.lock().unwrap().push(req.range.clone());
                match plan(n) {
                    Answer::Status(s) => {
                        let _ = respond(
                            &mut sock,
                            s,
                            &[],
                            b"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"try later\"}]}",
                        )
                        .await;
                    }
                    Answer::Body(b) => {
                        let _ = respond(&mut sock, 200, &[], &b).await;
                    }
                    Answer::Truncated(b, keep) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(&b[..keep]).await;
                        let _ = sock.flush().await;
                    }
                    Answer::Reset => {}
                }
            });
        }
    });
    FakeServer {
        host,
        count,
        ranges,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatch_is_refused_and_nothing_is_stored() {
    let good = b"the real blob".to_vec();
    let srv = fake_server(|_| Answer::Body(b"a tampered blob".to_vec())).await;
    let c = client(CredentialSource::Anonymous);
    let r = Reference::parse(&format!("{}/x/y:1", srv.host)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let err = c.fetch_blob(&r, &sha(&good), &dest).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&sha(&good)) && msg.contains(&srv.host) && msg.contains("x/y"),
        "{msg}"
    );
    assert!(!dest.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp file left behind"
    );
    // Not retried: corrupt content is not a transient fault.
    assert_eq!(srv.count.load(Ordering::SeqCst), 1);

    let err = c.fetch_config(&r, &sha(&good)).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_resets_are_retried_client_errors_are_not() {
    let blob = b"blob after two failures".to_vec();
    let b2 = blob.clone();
    let srv = fake_server(move |n| {
        if n < 2 {
            Answer::Status(503)
        } else {
            Answer::Body(b2.clone())
        }
    })
    .await;
    let c = client(CredentialSource::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let r = Reference::parse(&format!("{}/x/y:1", srv.host)).unwrap();
    let dest = dir.path().join("blob");
    let n = c.fetch_blob(&r, &sha(&blob), &dest).await.unwrap();
    assert_eq!(n, blob.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), blob);
    assert_eq!(srv.count.load(Ordering::SeqCst), 3);

    // Connection reset, then a transfer cut short and resumed with Range.
    let b3 = blob.clone();
    let srv = fake_server(move |n| match n {
        0 => Answer::Reset,
        1 => Answer::Truncated(b3.clone(), 5),
        _ => Answer::Body(b3.clone()),
    })
    .await;
    let r = Reference::parse(&format!("{}/x/y:1", srv.host)).unwrap();
    let dest = dir.path().join("blob2");
    c.fetch_blob(&r, &sha(&blob), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), blob);
    assert_eq!(srv.count.load(Ordering::SeqCst), 3);
    // The third request asked to resume after the 5 bytes already received;
    // the server answered 200 with everything and the client started over.
    assert_eq!(srv.ranges.lock().unwrap()[2].as_deref(), Some("bytes=5-"));

    // 404 is final after one request.
    let srv = fake_server(|_| Answer::Status(404)).await;
    let r = Reference::parse(&format!("{}/x/y:1", srv.host)).unwrap();
    let err = c
        .fetch_blob(&r, &sha(&blob), &dir.path().join("b3"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert_eq!(srv.count.load(Ordering::SeqCst), 1);

    // Persistent 503: bounded attempts, then an error that says so.
    let srv = fake_server(|_| Answer::Status(503)).await;
    let r = Reference::parse(&format!("{}/x/y:1", srv.host)).unwrap();
    let err = c
        .fetch_blob(&r, &sha(&blob), &dir.path().join("b4"))
        .await
        .unwrap_err();
    assert_eq!(srv.count.load(Ordering::SeqCst), 5);
    let msg = err.to_string();
    assert!(
        msg.contains("503")
            && msg.contains("gave up after 5 attempts")
            && msg.contains("UNAVAILABLE"),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_then_reported() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let c = RegistryClient::new(ClientOptions {
        credentials: CredentialSource::Anonymous,
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
        read_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    })
    .unwrap();
    let r = Reference::parse(&format!("{host}/x/y:1")).unwrap();
    let err = c.resolve(&r, &platform::host()).await.unwrap_err();
    task.abort();
    assert!(matches!(err, RegistryError::Network { .. }), "{err}");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[derive(Clone, Copy)]
enum Fault {
    Pass,
    /// Answer 503 without forwarding.
    Reject,
    /// Forward only this many body bytes, cut the connection, answer 503.
    CutAfter(usize),
}

/// A loopback proxy in front of the real registry that answers 503 instead of
/// forwarding the requests `fail(method, nth_of_that_method)` picks.
struct FaultProxy {
    host: String,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fault_proxy(
    upstream: String,
    fail: impl Fn(&str, usize) -> Fault + Send + Sync + 'static,
) -> FaultProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let counts = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
    let fail = Arc::new(fail);
    let l2 = log.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (upstream, log, counts, fail) =
                (upstream.clone(), l2.clone(), counts.clone(), fail.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                let n = {
                    let mut c = counts.lock().unwrap();
                    let e = c.entry(req.method.clone()).or_insert(0);
                    *e += 1;
                    *e - 1
                };
                let fault = fail(&req.method, n);
                let range = req
                    .headers
                    .iter()
                    .find(|h| h.to_ascii_lowercase().starts_with("content-range:"))
                    .map(|h| format!(" [{}]", h[14..].trim()))
                    .unwrap_or_default();
                log.lock().unwrap().push(format!(
                    "{} {}{range}{}",
                    req.method,
                    req.target.split('?').next().unwrap_or(""),
                    match fault {
                        Fault::Pass => "",
                        _ => " -> 503",
                    }
                ));
                let keep = match fault {
                    Fault::Pass => req.body.len(),
                    Fault::Reject => {
                        let _ = respond(&mut sock, 503, &[], b"injected").await;
                        return;
                    }
                    Fault::CutAfter(k) => k,
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
                for h in &req.headers {
                    head.push_str(h);
                    head.push_str("\r\n");
                }
                head.push_str("Connection: close\r\n\r\n");
                if up.write_all(head.as_bytes()).await.is_err()
                    || up.write_all(&req.body[..keep]).await.is_err()
                {
                    return;
                }
                if keep < req.body.len() {
                    // The connection breaks mid-body: the registry keeps
                    // what arrived; the client hears of a gateway failure.
                    let _ = up.flush().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    drop(up);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = respond(&mut sock, 503, &[], b"upstream broke").await;
                    return;
                }
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp).await;
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    FaultProxy { host, log, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_chunk_resumes_from_registry_offset() {
    let reg = Registry::start();
    // The second PATCH fails: the client must ask the registry where the
    // upload stands and go on from there, not start over.
    let proxy = fault_proxy(reg.host.clone(), |m, n| {
        if m == "PATCH" && n == 1 {
            Fault::Reject
        } else {
            Fault::Pass
        }
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let c = RegistryClient::new(ClientOptions {
        credentials: CredentialSource::Anonymous,
        retry: fast_retry(),
        chunk_size: Some(1000),
        ..ClientOptions::default()
    })
    .unwrap();
    let r = Reference::parse(&format!("{}/resume/app:1", proxy.host)).unwrap();
    let data: Vec<u8> = (0..3500u32).map(|i| (i * 13 % 256) as u8).collect();
    let path = write_blob(work.path(), &data);
    let st = c
        .push_blob(&r, &sha(&data), data.len() as u64, &path)
        .await
        .unwrap();
    assert_eq!(st, PushStatus::Uploaded);
    let log = proxy.log.lock().unwrap().clone();
    let methods: Vec<&str> = log.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "HEAD", "POST", "PATCH", "PATCH", "GET", "PATCH", "PATCH", "PATCH", "PUT"
        ],
        "{log:?}"
    );
    let dest = work.path().join("back");
    c.fetch_blob(&r, &sha(&data), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    // Default options: a large blob is streamed in one PATCH; when that
    // fails before any byte arrived, the upload starts over.
    let dflt = client(CredentialSource::Anonymous);
    let proxy = fault_proxy(reg.host.clone(), |m, n| {
        if m == "PATCH" && n == 0 {
            Fault::Reject
        } else {
            Fault::Pass
        }
    })
    .await;
    let r = Reference::parse(&format!("{}/resume/big:1", proxy.host)).unwrap();
    let big: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
    let path = write_blob(work.path(), &big);
    dflt.push_blob(&r, &sha(&big), big.len() as u64, &path)
        .await
        .unwrap();
    let log = proxy.log.lock().unwrap().clone();
    let methods: Vec<&str> = log.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        methods,
        ["HEAD", "POST", "PATCH", "GET", "POST", "PATCH", "PUT"],
        "{log:?}"
    );
    let dest = work.path().join("big");
    dflt.fetch_blob(&r, &sha(&big), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), big);

    // The streamed PATCH breaks after 1 MiB.
    let proxy = fault_proxy(reg.host.clone(), |m, n| {
        if m == "PATCH" && n == 0 {
            Fault::CutAfter(1 << 20)
        } else {
            Fault::Pass
        }
    })
    .await;
    let r = Reference::parse(&format!("{}/resume/cut:1", proxy.host)).unwrap();
    let cut: Vec<u8> = big.iter().map(|b| b ^ 0x5a).collect();
    let path = write_blob(work.path(), &cut);
    dflt.push_blob(&r, &sha(&cut), cut.len() as u64, &path)
        .await
        .unwrap();
    let log = proxy.log.lock().unwrap().clone();
    // docker-registry drops a broken PATCH's bytes ("0-0"), so the client
    // starts a new session rather than guess an offset.
    let methods: Vec<&str> = log.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        methods,
        ["HEAD", "POST", "PATCH", "GET", "POST", "PATCH", "PUT"],
        "{log:?}"
    );
    let dest = work.path().join("cut");
    dflt.fetch_blob(&r, &sha(&cut), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), cut);

    // A failed monolithic PUT: the session is empty ("0-0"), so a new one is used.
    let proxy = fault_proxy(reg.host.clone(), |m, n| {
        if m == "PUT" && n == 0 {
            Fault::Reject
        } else {
            Fault::Pass
        }
    })
    .await;
    let r = Reference::parse(&format!("{}/resume/small:1", proxy.host)).unwrap();
    let small = b"small blob".to_vec();
    let path = write_blob(work.path(), &small);
    c.push_blob(&r, &sha(&small), small.len() as u64, &path)
        .await
        .unwrap();
    let log = proxy.log.lock().unwrap().clone();
    let methods: Vec<&str> = log.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        methods,
        ["HEAD", "POST", "PUT", "GET", "POST", "PUT"],
        "{log:?}"
    );
    assert!(c.blob_exists(&r, &sha(&small)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_registry_with_private_ca() {
    // A CA and a server certificate for registry.test, which the client
    // resolves to the loopback registry.
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rbuild test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=registry.test",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:registry.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let (cert, key) = (
        std::fs::read(dir.join("srv.pem")).unwrap(),
        std::fs::read(dir.join("srv.key")).unwrap(),
    );
    let reg = Registry::start_with(
        "  tls:\n    certificate: {dir}/srv.pem\n    key: {dir}/srv.key\n",
        &[("srv.pem", &cert), ("srv.key", &key)],
    );
    let addr: std::net::SocketAddr = reg.host.parse().unwrap();
    let port = addr.port();
    let resolve = vec![("registry.test".to_string(), addr)];
    let r = Reference::parse(&format!("registry.test:{port}/tls/app:1")).unwrap();

    // Not trusted: a clear certificate error, not retried.
    let untrusting = RegistryClient::new(ClientOptions {
        credentials: CredentialSource::Anonymous,
        retry: fast_retry(),
        resolve: resolve.clone(),
        ..ClientOptions::default()
    })
    .unwrap();
    let err = untrusting.resolve(&r, &platform::host()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Network { .. }), "{msg}");
    assert!(
        msg.contains("certificate") && !msg.contains("gave up"),
        "{msg}"
    );

    // With the CA: push and pull over TLS.
    let c = RegistryClient::new(ClientOptions {
        credentials: CredentialSource::Anonymous,
        retry: fast_retry(),
        resolve,
        ca_certs: vec![dir.join("ca.pem")],
        ..ClientOptions::default()
    })
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = make_image(b"over tls", "amd64");
    push_image(&c, &r, &img, work.path()).await;
    pull_and_check(&c, &r, &img, work.path()).await;

    // A CA file without certificates is refused up front.
    std::fs::write(dir.join("empty.pem"), "nothing here").unwrap();
    let err = RegistryClient::new(ClientOptions {
        ca_certs: vec![dir.join("empty.pem")],
        ..ClientOptions::default()
    })
    .expect_err("empty CA file refused");
    assert!(err.to_string().contains("empty.pem"), "{err}");
}
