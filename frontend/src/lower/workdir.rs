//! WORKDIR: the config's working directory, and (below `/`) a step that creates it,
//! owned by the current USER.

use super::Lowerer;
use super::paths::resolve_path;
use super::state::{StageCx, StageState, Step};
use super::values::parse_owner;
use crate::Diagnostic;
use rbuild_graph::{FileAction, FileOp, Op};

impl Lowerer<'_> {
    pub(super) fn dispatch_workdir(
        &mut self,
        cx: &mut StageCx,
        st: &mut StageState,
        step: &Step,
        p: &str,
    ) -> Result<(), Diagnostic> {
        let ins = step.ins;
        let p = self.expand_checked(st, p, ins.span)?;
        self.lint.workdir(&mut st.checks, self.source, ins.span, &p);
        let wd = resolve_path(&st.cwd(), &p, false);
        st.config.config.working_dir = wd.clone();
        if wd == "/" {
            st.commit(format!("WORKDIR {wd}"), None);
            return Ok(());
        }
        let description = cx.describe(step, &ins.original, &st.env);
        let v = self.graph.add(
            Op::File(FileOp {
                actions: vec![FileAction::Mkdir {
                    path: wd.clone(),
                    mode: 0o755,
                    make_parents: true,
                    owner: parse_owner(&st.config.config.user),
                }],
            }),
            vec![st.root],
            self.meta(description, cx.index, ins.span),
        );
        st.root = v;
        st.commit(format!("WORKDIR {wd}"), Some(v));
        Ok(())
    }
}
