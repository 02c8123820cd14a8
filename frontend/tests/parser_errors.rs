//! Every bad input the parser and the typed-instruction layer reject: the
//! exact message, the line and column of the caret, and the hint.

use rbuild_frontend::Diagnostic;
use rbuild_frontend::instructions::instructions;
use rbuild_frontend::parser::parse;

/// The error `parse` (then, if it succeeds, `instructions`) gives for `src`.
fn error_of(src: &str) -> Diagnostic {
    match parse(src) {
        Err(d) => d,
        Ok(df) => match instructions(&df, src) {
            Err(d) => d,
            Ok(v) => panic!("accepted {src:?}: {v:?}"),
        },
    }
}

/// Asserts message, line, column and that the hint contains `help`.
fn check(src: &str, message: &str, line: usize, column: usize, help: &str) {
    let d = error_of(src);
    assert_eq!(d.message, message, "message for {src:?}");
    assert_eq!(
        (d.line, d.column),
        (line, column),
        "location of {message:?}"
    );
    let h = d.help.clone().unwrap_or_default();
    assert!(h.contains(help), "help {h:?} lacks {help:?}");
}

#[test]
fn unknown_instruction_suggests_closest() {
    check(
        "FROM scratch\nRUNN echo hi\n",
        "unknown instruction \"RUNN\"",
        2,
        1,
        "did you mean RUN?",
    );
    let d = error_of("FROM scratch\nRUNN echo hi\n");
    assert_eq!(
        d.to_string(),
        "Dockerfile:2:1: unknown instruction \"RUNN\"\n  2 | RUNN echo hi\n    | ^\n  help: did you mean RUN?"
    );
}

#[test]
fn unknown_instruction_indented_caret_on_keyword() {
    check(
        "FROM a\n  CPY a b\n",
        "unknown instruction \"CPY\"",
        2,
        3,
        "did you mean COPY?",
    );
}

#[test]
fn unknown_instruction_without_close_match_lists_all() {
    check(
        "FROM a\nFOOBARBAZ x\n",
        "unknown instruction \"FOOBARBAZ\"",
        2,
        1,
        "instructions are ADD, ARG",
    );
}

#[test]
fn unknown_onbuild_trigger() {
    check(
        "ONBUILD RUNX foo\n",
        "unknown instruction \"RUNX\"",
        1,
        9,
        "did you mean RUN?",
    );
}

#[test]
fn unterminated_heredoc() {
    check(
        "FROM a\nRUN <<EOF\necho hi\n",
        "unterminated heredoc \"EOF\"",
        2,
        5,
        "only EOF",
    );
}

#[test]
fn unterminated_chomped_heredoc() {
    check(
        "FROM a\nCOPY <<-EOT /x\n\thi\n",
        "unterminated heredoc \"EOT\"",
        2,
        6,
        "leading tabs allowed",
    );
}

#[test]
fn env_without_value() {
    check(
        "FROM busybox\n\nENV PATH\n",
        "ENV must have two arguments",
        3,
        5,
        "ENV PATH=value",
    );
}

#[test]
fn label_without_value() {
    check(
        "FROM a\nLABEL foo\n",
        "LABEL must have two arguments",
        2,
        7,
        "LABEL foo=value",
    );
}

#[test]
fn env_word_without_equals() {
    check(
        "FROM a\nENV a=b c\n",
        "Syntax error - can't find = in \"c\". Must be of the form: name=value",
        2,
        9,
        "name=value",
    );
}

#[test]
fn empty_file() {
    check(
        "",
        "file with no instructions",
        1,
        1,
        "at least one instruction",
    );
}

#[test]
fn only_comments() {
    check(
        "# Hello\n# c\n\n",
        "file with no instructions",
        3,
        1,
        "at least one instruction",
    );
}

#[test]
fn nested_json_array() {
    check(
        "CMD [ \"echo\", [ \"nested json\" ] ]\n",
        "when using JSON array syntax, arrays must be comprised of strings only",
        1,
        5,
        "quote every element",
    );
}

#[test]
fn invalid_escape_directive() {
    check(
        "# escape=x\nFROM a\n",
        "invalid escape token 'x' does not match ` or \\",
        1,
        10,
        "backtick",
    );
}

#[test]
fn repeated_directive() {
    check(
        "# escape=`\n# escape=\\\nFROM a\n",
        "only one escape parser directive can be used",
        2,
        10,
        "repeated",
    );
}

#[test]
fn continuation_into_nothing() {
    check(
        "FROM a\n\\\n",
        "line continuation without an instruction",
        2,
        1,
        "escape character",
    );
}

#[test]
fn unknown_flag_suggests_and_lists() {
    check(
        "FROM a\nCOPY --form=a b c\n",
        "unknown flag: --form",
        2,
        6,
        "did you mean --from? COPY takes --chown, --from",
    );
}

#[test]
fn unknown_run_flag() {
    check(
        "FROM a\nRUN --network=none --netwrk=host x\n",
        "unknown flag: --netwrk",
        2,
        20,
        "RUN takes --mount, --network, --security",
    );
}

#[test]
fn flag_on_instruction_without_flags() {
    check(
        "FROM a\nUSER --foo=bar me\n",
        "unknown flag: --foo",
        2,
        6,
        "USER takes no flags",
    );
}

#[test]
fn duplicate_flag() {
    check(
        "FROM --platform=a --platform=b x\n",
        "duplicate flag specified: --platform",
        1,
        19,
        "only once",
    );
}

#[test]
fn flag_missing_value() {
    check(
        "FROM a\nCOPY --from a b\n",
        "missing a value on flag: --from",
        2,
        6,
        "--from=<value>",
    );
}

#[test]
fn mount_missing_value() {
    check(
        "FROM a\nRUN --mount echo\n",
        "missing a value on flag: --mount",
        2,
        5,
        "--mount=<value>",
    );
}

#[test]
fn bad_boolean_flag() {
    check(
        "FROM a\nCOPY --link=maybe a b\n",
        "expecting boolean value for flag --link, not: maybe",
        2,
        6,
        "--link=false",
    );
}

#[test]
fn onbuild_onbuild() {
    check(
        "FROM a\nONBUILD ONBUILD RUN x\n",
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        2,
        9,
        "single trigger",
    );
}

#[test]
fn onbuild_from() {
    check(
        "FROM a\nONBUILD FROM b\n",
        "FROM isn't allowed as an ONBUILD trigger",
        2,
        9,
        "triggers",
    );
}

#[test]
fn onbuild_maintainer() {
    check(
        "FROM a\nONBUILD MAINTAINER me\n",
        "MAINTAINER isn't allowed as an ONBUILD trigger",
        2,
        9,
        "triggers",
    );
}

#[test]
fn from_arity() {
    check(
        "FROM a b\n",
        "FROM requires either one or three arguments",
        1,
        1,
        "FROM <image> [AS <name>]",
    );
}

#[test]
fn bad_stage_name() {
    check(
        "FROM a AS 1bad\n",
        "invalid name for build stage: \"1bad\", name can't start with a number or contain symbols",
        1,
        11,
        "[a-z]",
    );
}

#[test]
fn copy_without_destination() {
    check(
        "FROM a\nCOPY onlyone\n",
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        2,
        1,
        "<dest>",
    );
}

#[test]
fn heredoc_as_destination() {
    check(
        "FROM a\nCOPY a <<EOF\nx\nEOF\n",
        "COPY cannot accept a heredoc as a destination",
        2,
        8,
        "destination path",
    );
}

#[test]
fn shell_form_shell() {
    check(
        "FROM a\nSHELL /bin/sh -c\n",
        "SHELL requires the arguments to be in JSON form",
        2,
        1,
        "JSON array",
    );
}

#[test]
fn healthcheck_duration_without_unit() {
    check(
        "FROM a\nHEALTHCHECK --interval=5 CMD true\n",
        "time: missing unit in duration \"5\"",
        2,
        13,
        "30s",
    );
}

#[test]
fn healthcheck_negative_retries() {
    check(
        "FROM a\nHEALTHCHECK --retries=-1 CMD true\n",
        "--retries cannot be negative (-1)",
        2,
        13,
        "0 or more",
    );
}

#[test]
fn healthcheck_unknown_type() {
    check(
        "FROM a\nHEALTHCHECK BOGUS x\n",
        "Unknown type \"BOGUS\" in HEALTHCHECK (try CMD)",
        2,
        13,
        "CMD",
    );
}

#[test]
fn env_unterminated_quote() {
    check(
        "FROM a\nENV a=\"b\n",
        "unexpected end of statement while looking for matching double-quote in \"\\\"b\"",
        2,
        7,
        "close the quote",
    );
}

#[test]
fn blank_arg_name() {
    check(
        "FROM a\nARG =x\n",
        "ARG names can not be blank",
        2,
        5,
        "ARG <name>",
    );
}

#[test]
fn expose_without_ports() {
    check(
        "FROM a\nEXPOSE\n",
        "EXPOSE requires at least one argument",
        2,
        1,
        "EXPOSE <port>",
    );
}

#[test]
fn run_without_command() {
    check(
        "FROM a\nRUN\n",
        "RUN requires at least one argument",
        2,
        1,
        "RUN <command>",
    );
}

#[test]
fn error_on_continued_instruction_points_at_first_line() {
    check(
        "FROM a\nENV \\\n  a=b \\\n  c\n",
        "Syntax error - can't find = in \"c\". Must be of the form: name=value",
        2,
        1,
        "name=value",
    );
}
