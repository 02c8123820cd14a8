//! Several `--target`s lowered into one graph: shared vertices once, each
//! target's image as a build of it alone would give.

use rbuild_frontend::lower::{LowerOptions, NoImages, lower, lower_targets};
use rbuild_graph::Op;

const DF: &str = "FROM busybox AS base\nRUN echo shared > /s\n\
FROM base AS test\nRUN echo test\nCMD [\"test\"]\n\
FROM base AS app\nRUN echo app\nCMD [\"app\"]\n\
FROM busybox AS unused\nRUN echo unused\n";

fn runs(g: &rbuild_graph::BuildGraph) -> Vec<String> {
    g.iter()
        .filter_map(|(_, v)| match &v.op {
            Op::Exec(e) => Some(e.args.join(" ")),
            _ => None,
        })
        .collect()
}

#[test]
fn two_targets_share_their_common_stage() {
    let opts = LowerOptions::default();
    let both = lower_targets(DF, &opts, &["test".into(), "app".into()], &NoImages).unwrap();
    assert_eq!(both.targets.len(), 2);
    assert_eq!(both.targets[0].stage_name.as_deref(), Some("test"));
    assert_eq!(both.targets[1].stage_name.as_deref(), Some("app"));
    let mut got = runs(&both.graph);
    got.sort();
    // The shared RUN once, the unused stage not at all.
    assert_eq!(
        got,
        [
            "/bin/sh -c echo app",
            "/bin/sh -c echo shared > /s",
            "/bin/sh -c echo test"
        ]
    );
    assert_ne!(both.targets[0].root, both.targets[1].root);
    assert_eq!(
        both.targets[0].config.config.cmd,
        Some(vec!["test".to_string()])
    );
    assert_eq!(
        both.targets[1].config.config.cmd,
        Some(vec!["app".to_string()])
    );

    // Each target's root has the same cache key as when built alone.
    for (i, name) in ["test", "app"].iter().enumerate() {
        let alone = lower(
            DF,
            &LowerOptions {
                target: Some(name.to_string()),
                ..LowerOptions::default()
            },
            &NoImages,
        )
        .unwrap();
        assert_eq!(
            both.graph.key(both.targets[i].root),
            alone.graph.key(alone.target.root),
            "{name}"
        );
        let entries = |h: &[rbuild_frontend::lower::HistoryStep]| {
            h.iter().map(|s| s.entry.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            entries(&both.targets[i].history),
            entries(&alone.target.history)
        );
    }
}

#[test]
fn no_targets_means_the_options_target() {
    let opts = LowerOptions::default();
    let last = lower_targets(DF, &opts, &[], &NoImages).unwrap();
    assert_eq!(last.targets.len(), 1);
    assert_eq!(last.targets[0].stage_name.as_deref(), Some("unused"));
    let err = lower_targets(DF, &opts, &["test".into(), "nope".into()], &NoImages).unwrap_err();
    assert!(
        err.to_string().contains("\"nope\" could not be found"),
        "{err}"
    );
}
