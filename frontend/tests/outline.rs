//! `--call outline` and `--call targets`: the build args (with values and descriptions),
//! secrets and SSH sockets a target uses, and the stages of a Dockerfile; as text and JSON.

use rbuild_frontend::calls;
use rbuild_frontend::lower::{LowerOptions, NoImages};
use rbuild_frontend::outline::{self, Outline};
use std::collections::BTreeMap;

const ARGS: &str = r#"
ARG inherited=box
ARG inherited2=box2
ARG unused=abc${inherited2}
# sfx is a suffix
ARG sfx="usy${inherited}"

FROM b${sfx} AS first
# this is not assigned to anything
ARG FOO=123
# BAR is a number
ARG BAR=456
RUN true

FROM alpine${unused} AS second
ARG BAZ
RUN true

FROM scratch AS third
ARG ABC=a
# check=skip=all
ARG password
# alternate_password will show up in the outline
# check=skip=all
ARG alternate_password

# target defines build target
FROM third AS target
COPY --from=first /etc/passwd /

FROM second
"#;

fn outline_of(src: &str, target: &str, args: &[(&str, &str)]) -> Outline {
    let opts = LowerOptions {
        target: Some(target.to_string()),
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    calls::outline(src, &opts, &NoImages).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn outline_lists_the_args_a_target_uses() {
    let o = outline_of(ARGS, "target", &[("BAR", "678")]);
    assert_eq!(o.name, "target");
    assert_eq!(o.description, "defines build target");
    let args: Vec<(&str, &str, &str, usize)> = o
        .args
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.value.as_str(),
                a.description.as_str(),
                a.line,
            )
        })
        .collect();
    assert_eq!(
        args,
        [
            ("inherited", "box", "", 2),
            ("sfx", "usybox", "is a suffix", 6),
            ("FOO", "123", "", 10),
            ("BAR", "678", "is a number", 12),
            ("ABC", "a", "", 20),
            ("password", "", "", 22),
            ("alternate_password", "", "will show up in the outline", 25),
        ]
    );
    assert_eq!(
        o.to_text(),
        "TARGET:      target\nDESCRIPTION: defines build target\n\n\
         BUILD ARG            VALUE    DESCRIPTION\n\
         inherited            box\n\
         sfx                  usybox   is a suffix\n\
         FOO                  123\n\
         BAR                  678      is a number\n\
         ABC                  a\n\
         password\n\
         alternate_password            will show up in the outline\n\n"
    );
    let json = serde_json::to_value(o.json(ARGS)).unwrap();
    assert_eq!(json["name"], "target");
    assert_eq!(json["args"][1]["name"], "sfx");
    assert_eq!(json["args"][1]["value"], "usybox");
    assert_eq!(json["args"][1]["description"], "is a suffix");
    assert_eq!(json["args"][1]["location"]["ranges"][0]["start"]["line"], 6);
    assert!(json["args"][5].get("value").is_none(), "omitted when empty");
    assert_eq!(json["sources"].as_array().map(Vec::len), Some(1));
}

#[test]
fn outline_lists_secrets_and_ssh() {
    let src = "
FROM busybox AS first
RUN --mount=type=secret,target=/etc/passwd,required=true --mount=type=ssh true

FROM alpine AS second
RUN --mount=type=secret,id=unused --mount=type=ssh,id=ssh2 true

FROM scratch AS third
ARG BAR
RUN --mount=type=secret,id=second${BAR} true

FROM third AS target
COPY --from=first /foo /
RUN --mount=type=ssh,id=ssh3,required true

FROM second
";
    let o = outline_of(src, "target", &[("BAR", "678")]);
    let mounts = |m: &[outline::OutlineMount]| -> Vec<(String, bool, usize)> {
        m.iter()
            .map(|m| (m.name.clone(), m.required, m.line))
            .collect()
    };
    assert_eq!(
        mounts(&o.secrets),
        [
            ("passwd".to_string(), true, 3),
            ("second678".to_string(), false, 10)
        ]
    );
    assert_eq!(
        mounts(&o.ssh),
        [
            ("default".to_string(), false, 3),
            ("ssh3".to_string(), true, 14)
        ]
    );
    let text = o.to_text();
    assert!(
        text.ends_with("SECRET      REQUIRED\npasswd      true\nsecond678\n\nSSH       REQUIRED\ndefault\nssh3      true\n\n"),
        "{text}"
    );
    let json = serde_json::to_value(o.json(src)).unwrap();
    assert_eq!(json["secrets"][0]["required"], true);
    assert!(json["secrets"][1].get("required").is_none());
    assert_eq!(json["ssh"][1]["name"], "ssh3");
}

#[test]
fn targets_lists_the_stages() {
    let src = "
# build defines stage for compiling the binary
FROM alpine AS build
RUN true

FROM busybox as second
RUN false

FROM --platform=$BUILDPLATFORM alpine
RUN false

# binary returns the compiled binary
FROM second AS binary
";
    let t = outline::targets(src, "Dockerfile").unwrap();
    let rows: Vec<(&str, &str, bool, &str, usize)> = t
        .targets
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.description.as_str(),
                t.default,
                t.base.as_str(),
                t.line,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "build",
                "defines stage for compiling the binary",
                false,
                "alpine",
                3
            ),
            ("second", "", false, "busybox", 6),
            ("", "", false, "alpine", 9),
            ("binary", "returns the compiled binary", true, "second", 13),
        ]
    );
    assert_eq!(t.targets[2].platform, "$BUILDPLATFORM");
    assert_eq!(
        t.to_text(),
        "TARGET           DESCRIPTION\nbuild            defines stage for compiling the binary\nsecond\n\nbinary (default) returns the compiled binary\n"
    );
    let json = serde_json::to_value(t.json(src)).unwrap();
    assert_eq!(json["targets"][3]["default"], true);
    assert!(json["targets"][0].get("default").is_none());
    assert_eq!(
        json["targets"][0]["location"]["ranges"][0]["start"]["line"],
        3
    );
    assert_eq!(json["targets"][2]["platform"], "$BUILDPLATFORM");
}
