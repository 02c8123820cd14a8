//! Crash safety: `rbuild build`, `push`, `pull` and `build --cache-to` are killed
//! (SIGKILL) at seeded-random moments, 72 times in all; after each kill `rbuild check`
//! must find the store consistent, and the command run again to the end, then a build,
//! must give the right image. Delays are drawn from the seed within how long each command
//! takes here (measured, and measured again whenever one ends before its kill; never
//! asserted), so the kills land all through each command.
//! Needs root, busybox-static, umoci and docker-registry (scripts/install-deps.sh).

use rbuild_tests::{Env, Registry};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Fixed, so a failure replays the same kill points.
const SEED: u64 = 0x5eed_0009;
/// Kills per command.
const ROUNDS: usize = 18;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// xorshift64*: a few lines beat a dependency for drawing delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A delay in [0, 0.9 × `full`): a kill lands before a command that takes about
    /// `full` ends, anywhere in it.
    fn delay(&mut self, full: Duration) -> Duration {
        let nanos = (full.as_nanos() * 9 / 10).max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

/// Lines of text from `rng`: compressible, but not trivially (a layer worth gzipping).
fn big_file(rng: &mut Rng) -> String {
    (0..120_000)
        .map(|i| format!("{i} {:x}\n", rng.next() % 100_000))
        .collect()
}

struct Counts {
    /// Kills delivered while the command was still running.
    killed: usize,
    /// Commands that had finished before their kill time.
    finished_first: usize,
    /// Problems `rbuild check` found after a kill.
    inconsistencies: usize,
}

/// Runs `rbuild args` on `env` and SIGKILLs it after a delay drawn within `*full` (how
/// long it takes), unless it ends first: then `*full` becomes the time it took, so the
/// next delays follow the machine's speed. Returns whether it was killed.
fn run_and_kill(env: &Env, args: &[&str], rng: &mut Rng, full: &mut Duration) -> bool {
    let delay = rng.delay(*full);
    let start = Instant::now();
    let mut child = env
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rbuild");
    let until = Instant::now() + delay;
    loop {
        if child.try_wait().expect("wait").is_some() {
            *full = start.elapsed();
            return false;
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(2)));
    }
    let killed = child.kill().is_ok();
    child.wait().expect("reap");
    killed
}

fn as_args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// How long `rbuild args` takes to the end here (only to scale the kill delays).
fn time(env: &Env, args: &[&str]) -> Duration {
    let start = Instant::now();
    env.ok(args);
    start.elapsed()
}

/// `rbuild check` after a kill: counts and reports the problems it finds.
fn check(env: &Env, what: &str, counts: &mut Counts) {
    let o = env.run(&["check"]);
    let out = text(&o.stdout);
    let problems = out.lines().filter(|l| l.starts_with("problem:")).count();
    if problems > 0 || !o.status.success() {
        eprintln!("after killing {what}:\n{out}{}", text(&o.stderr));
        counts.inconsistencies += problems.max(1);
    }
}

/// The image `tag` of `env` holds what the Dockerfile below makes with `n`.
fn assert_image(env: &Env, tag: &str, big: &str, n: Option<usize>) {
    let rootfs = env.umoci_unpack(tag);
    assert_eq!(std::fs::read_to_string(rootfs.join("big")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("lines"))
            .unwrap()
            .trim(),
        "240000"
    );
    if let Some(n) = n {
        assert_eq!(
            std::fs::read_to_string(rootfs.join("n")).unwrap(),
            format!("{n}\n")
        );
    }
}

#[test]
fn killed_commands_leave_a_consistent_store() {
    let mut rng = Rng(SEED);
    let reg = Registry::start();
    let env = Env::new();
    env.busybox_base();
    let big = big_file(&mut rng);
    let ctx = env.context(
        "app",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY big /big\nRUN cat /big /big | wc -l > /lines && cp /big /copy\nARG N=0\nRUN echo $N > /n\n",
            ),
            ("big", &big),
        ],
    );
    let build = |n: usize, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["build".into(), "--progress=plain".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend([
            "--build-arg".into(),
            format!("N={n}"),
            "-t".into(),
            "app:1".into(),
            p(&ctx).into(),
        ]);
        a
    };
    let strs = |v: &[String]| -> Vec<String> { v.to_vec() };

    // How long each command takes here.
    let b = build(0, &["--no-cache"]);
    let mut t_build = time(&env, &as_args(&b));
    let remote = format!("{}/app:1", reg.host);
    env.ok(&["tag", "app:1", &remote]);
    env.ok(&["push", &remote]);
    // Pushes in the rounds go to new repositories of a registry that has the blobs.
    let timing = format!("{}/timing:1", reg.host);
    env.ok(&["tag", "app:1", &timing]);
    let mut t_push = time(&env, &["push", &timing]);
    let puller = Env::new();
    let mut t_pull = time(&puller, &["pull", &remote]);
    puller.ok(&["rmi", &remote]);
    let c = build(
        0,
        &[
            "--cache-to",
            &format!("type=registry,ref={}/cache:0", reg.host),
        ],
    );
    let mut t_cache = time(&env, &as_args(&c));
    eprintln!(
        "full runs: build {t_build:?}, push {t_push:?}, pull {t_pull:?}, cache-to {t_cache:?}"
    );

    let mut counts = Counts {
        killed: 0,
        finished_first: 0,
        inconsistencies: 0,
    };
    let tally = |killed: bool, counts: &mut Counts| {
        if killed {
            counts.killed += 1;
        } else {
            counts.finished_first += 1;
        }
    };
    for round in 0..ROUNDS {
        let n = round + 1;
        // A build that executes every step.
        let args = strs(&build(n, &["--no-cache"]));
        let k = run_and_kill(&env, &as_args(&args), &mut rng, &mut t_build);
        tally(k, &mut counts);
        check(&env, "build", &mut counts);
        env.ok(&as_args(&build(n, &[])));
        assert_image(&env, "app:1", &big, Some(n));

        // A push to a new repository (blobs uploaded or mounted, manifest last).
        let target = format!("{}/push{round}:1", reg.host);
        env.ok(&["tag", "app:1", &target]);
        let k = run_and_kill(&env, &["push", &target], &mut rng, &mut t_push);
        tally(k, &mut counts);
        check(&env, "push", &mut counts);
        env.ok(&["push", &target]);

        // A pull into a store that lacks every blob of the image.
        puller.ok(&["prune", "--all"]);
        let k = run_and_kill(&puller, &["pull", &target], &mut rng, &mut t_pull);
        tally(k, &mut counts);
        check(&puller, "pull", &mut counts);
        puller.ok(&["pull", &target]);
        assert_image(&puller, &target, &big, Some(n));
        puller.ok(&["rmi", &target]);

        // A build exporting its cache to the registry.
        let cache = format!("type=registry,ref={}/cache:{n},mode=max", reg.host);
        let args = strs(&build(n + 1000, &["--cache-to", &cache]));
        let k = run_and_kill(&env, &as_args(&args), &mut rng, &mut t_cache);
        tally(k, &mut counts);
        check(&env, "build --cache-to", &mut counts);
        let o: Output = env.ok(&as_args(&args));
        assert!(
            text(&o.stderr).contains("exported cache to "),
            "{}",
            text(&o.stderr)
        );
        assert_image(&env, "app:1", &big, Some(n + 1000));
    }
    eprintln!(
        "kill points: {} killed mid-command, {} finished before their kill; {} inconsistencies",
        counts.killed, counts.finished_first, counts.inconsistencies
    );
    assert_eq!(counts.inconsistencies, 0);
    assert!(
        counts.killed >= 50,
        "only {} kills landed mid-command",
        counts.killed
    );
    // After all that, the stores check clean and build right.
    for e in [&env, &puller] {
        let o = e.ok(&["check"]);
        assert!(
            text(&o.stdout).ends_with(": consistent\n"),
            "{}",
            text(&o.stdout)
        );
    }
}
